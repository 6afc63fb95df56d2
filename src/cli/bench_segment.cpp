// mosaic bench --segment: run only some of the step's layers, handing the hidden state
// between segments through files (--hidden-in, --hidden-out), so that a step longer than
// one sitting runs in pieces.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <tuple>

#include "cli/bench_internal.h"
#include "core/error.h"
#include "core/format.h"
#include "io/safetensors.h"

namespace mosaic::cli {

namespace {

// --segment A:B (B may be left out: to the last layer).
std::pair<int, int> parse_segment(const std::string& s, int n_layers) {
  const auto colon = s.find(':');
  MOSAIC_CHECK(colon != std::string::npos, "--segment '{}': expected FIRST:END, e.g. 0:11 or 22:", s);
  char* end = nullptr;
  const long first = std::strtol(s.c_str(), &end, 10);
  MOSAIC_CHECK(end == s.c_str() + colon, "--segment '{}': FIRST is not a number", s);
  long last = n_layers;
  if (colon + 1 < s.size()) {
    last = std::strtol(s.c_str() + colon + 1, &end, 10);
    MOSAIC_CHECK(*end == '\0', "--segment '{}': END is not a number", s);
  }
  MOSAIC_CHECK(0 <= first && first < last && last <= n_layers,
               "--segment '{}': needs 0 <= FIRST < END <= {} (the model's layers)", s, n_layers);
  return {static_cast<int>(first), static_cast<int>(last)};
}

DType act_dtype(const Backend& be) { return be.traits().act_size == 2 ? DType::BF16 : DType::F32; }

}  // namespace

// The checks that need no model: they run before any weight loads.
void check_segment_flags(const BenchFlags& f) {
  const bool segmented = !f.segment.empty();
  MOSAIC_CHECK(segmented || (f.hidden_in.empty() && f.hidden_out.empty()),
               "--hidden-in and --hidden-out go with --segment");
  MOSAIC_CHECK(!segmented || (f.layers <= 0 && !f.max_tokens),
               "--segment does not combine with --layers or --max-tokens");
}

// Without --segment: all layers, from the tokens.
Segment start_segment(Session& s, const BenchFlags& f) {
  Model& m = s.model();
  const io::ModelConfig& config = m.config();
  Segment seg;
  seg.end = config.n_layers;
  if (f.segment.empty()) return seg;
  std::tie(seg.first, seg.end) = parse_segment(f.segment, config.n_layers);
  MOSAIC_CHECK(parse_lengths(f.tokens).size() == 1, "--segment runs one length: give --tokens N");
  MOSAIC_CHECK(seg.first > 0 || f.hidden_in.empty(),
               "--hidden-in: the first segment starts from the tokens, not from a hidden state");
  MOSAIC_CHECK(seg.first == 0 || !f.hidden_in.empty(),
               "--segment {}: a segment after layer 0 needs --hidden-in FILE (the previous segment's --hidden-out)",
               f.segment);
  MOSAIC_CHECK(seg.end < config.n_layers || f.hidden_out.empty(),
               "--hidden-out: the last segment runs the head; there is no hidden state to hand on");
  MOSAIC_CHECK(seg.end == config.n_layers || !f.hidden_out.empty(),
               "--segment {}: a segment that stops before the last layer needs --hidden-out FILE", f.segment);
  m.set_segment(seg.first, seg.end);
  if (!f.hidden_in.empty()) {
    const int64_t L = parse_lengths(f.tokens).front();
    auto file = io::SafetensorsFile::open(f.hidden_in);
    const io::TensorInfo* t = file.find("hidden");
    MOSAIC_CHECK(t, "--hidden-in '{}': no tensor 'hidden' (write one with --hidden-out)", f.hidden_in);
    MOSAIC_CHECK(t->dtype == act_dtype(s.backend()) && t->shape == std::vector<int64_t>({L, config.d_model}),
                 "--hidden-in '{}': 'hidden' is {} {}; this run needs {} [{}, {}] (same --tokens and backend as "
                 "the segment that wrote it)", f.hidden_in, dtype_name(t->dtype), fmt::join(t->shape, "x"),
                 dtype_name(act_dtype(s.backend())), L, config.d_model);
    seg.hidden.assign(t->data, t->data + t->nbytes);
  }
  fmt::print(stderr, "mosaic: running layers {}..{} of {}{}\n", seg.first, seg.end - 1, config.n_layers,
             f.hidden_in.empty() ? "" : fmt::format(" from the hidden state in {}", f.hidden_in));
  return seg;
}

void write_hidden_out(Session& s, const BenchFlags& f, const Segment& seg, const Measured& r) {
  io::write_safetensors(f.hidden_out, "hidden", act_dtype(s.backend()), {r.L, s.model().config().d_model},
                        r.last.hidden.data(), r.last.hidden.size());
  fmt::print("  hidden state after layer {} ({}) -> {}\n", seg.end - 1,
             human_bytes(static_cast<double>(r.last.hidden.size())), f.hidden_out);
}

}  // namespace mosaic::cli
