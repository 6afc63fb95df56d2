#include "decode/diffusion_loss.h"

#include <cmath>

#include "core/error.h"
#include "sampling/counter_noise.h"

namespace mosaic {

LossResult diffusion_loss(Model& m, const std::vector<int32_t>& tokens, const LossOptions& o,
                          std::optional<int32_t> bos) {
  MOSAIC_CHECK(o.seq_len >= 2 && o.t_draws >= 1, "eval: --seq-len must be >= 2 and --t-draws >= 1");
  const int64_t body = bos ? o.seq_len - 1 : o.seq_len;
  const int64_t n_windows = static_cast<int64_t>(tokens.size()) / body;
  MOSAIC_CHECK(n_windows > 0, "eval: the text has {} tokens, fewer than one window of {}", tokens.size(), body);
  const int32_t mask = static_cast<int32_t>(m.config().mask_token_id);
  const int64_t V = m.config().embedding_size;
  LossResult r;
  double ce_sum = 0;
  std::vector<int32_t> x0(static_cast<size_t>(o.seq_len)), xt, pos;
  const int64_t windows = o.max_windows > 0 ? std::min(o.max_windows, n_windows) : n_windows;
  for (int64_t w = 0; w < windows; ++w) {
    int64_t k = 0;
    if (bos) x0[k++] = *bos;
    for (int64_t i = 0; i < body; ++i) x0[k++] = tokens[static_cast<size_t>(w * body + i)];
    for (int64_t j = 0; j < o.t_draws; ++j) {
      const double t = (static_cast<double>(j) + 0.5) / static_cast<double>(o.t_draws);
      const uint64_t draw = static_cast<uint64_t>(w * o.t_draws + j);
      xt = x0;
      pos.clear();
      for (int64_t i = 0; i < o.seq_len; ++i)
        if (counter_uniform(o.seed, kEvalStream, draw, static_cast<uint64_t>(i), 0) < t) {
          xt[i] = mask;
          pos.push_back(static_cast<int32_t>(i));
        }
      double window_ce = 0;
      if (!pos.empty()) {
        StepRequest req;
        req.tokens = &xt;
        req.head_pos = pos;
        req.emit_logits = true;
        StepOutputs out = m.step(req);
        for (size_t p = 0; p < pos.size(); ++p) {
          const float* l = out.logits.data() + static_cast<int64_t>(p) * V;
          double mx = l[0];
          int64_t arg = 0;
          for (int64_t v = 1; v < V; ++v)
            if (l[v] > mx) mx = l[v], arg = v;
          double sum = 0;
          for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(l[v]) - mx);
          const int32_t target = x0[pos[p]];
          window_ce += std::log(sum) + mx - l[target];
          r.correct += arg == target;
        }
        r.masked += static_cast<int64_t>(pos.size());
      }
      ce_sum += window_ce;
      r.loss += window_ce / t / static_cast<double>(o.seq_len);
    }
    ++r.windows;
  }
  r.loss /= static_cast<double>(r.windows * o.t_draws);
  r.masked_ce = r.masked ? ce_sum / static_cast<double>(r.masked) : 0.0;
  return r;
}

}  // namespace mosaic
