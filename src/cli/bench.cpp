// mosaic bench: time one denoising step at given lengths (the first step of LLaDA's
// semi-autoregressive schedule: M = block-length masked rows reach the head) and report
// memory; --max-tokens searches the longest sequence whose step fits.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <tuple>

#include "cli/commands.h"
#include "cli/session.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "plan/cost_model.h"
#include "plan/memory_plan.h"

namespace mosaic::cli {

namespace {

struct BenchFlags {
  SessionFlags session;
  std::string tokens = "4096,16384";
  int64_t gen_length = 256, block_length = 32;
  int warmup = 1, iters = 5, layers = -1;
  bool max_tokens = false, op_times = false;
  int64_t confirm_tokens = 0;
  std::string json_path, profile_path;
  std::string segment, hidden_in, hidden_out;
};

std::vector<int64_t> parse_lengths(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long long x = std::strtoll(item.c_str(), &end, 10);
    if (end && (*end == 'k' || *end == 'K')) x *= 1024, ++end;
    MOSAIC_CHECK(end && *end == '\0' && x > 0, "--tokens: '{}' is not a positive length (e.g. 4096,16k)", item);
    v.push_back(x);
  }
  return v;
}

struct Measured {
  int64_t L = 0, M = 0;
  std::vector<double> ms;
  double median_ms = 0, tflops = 0;
  size_t arena = 0, peak_live = 0, mapped = 0, device_peak = 0;
  double avg_live = 0;
  std::vector<int> chunks;
  std::string error;
  OpTimes op_times;
  StepOutputs last;  // the last step's outputs
  int64_t pos0 = 0;  // position of the first head row
};

int64_t pos_of(const Measured& r, int32_t row) { return r.pos0 + row; }

// The step's time by kind of node, largest first, from one extra step that waits for the
// device after every node.
nlohmann::json print_op_times(const OpTimes& t) {
  std::vector<std::pair<std::string, OpTime>> v(t.begin(), t.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double total = 0;
  for (const auto& [k, o] : v) total += o.ms;
  fmt::print("  {:<40} {:>7} {:>10} {:>7} {:>8}\n", "node kind (region, op, product)", "calls", "ms", "share", "TFLOP/s");
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [k, o] : v) {
    const double tf = o.flops > 0 && o.ms > 0 ? o.flops / (o.ms * 1e-3) / 1e12 : 0.0;
    fmt::print("  {:<40} {:>7} {:>10.2f} {:>6.1f}% {:>8}\n", k, o.calls, o.ms, 100.0 * o.ms / total,
               tf > 0 ? fmt::format("{:.1f}", tf) : "");
    j.push_back({{"kind", k}, {"calls", o.calls}, {"ms", o.ms}, {"flops", o.flops}});
  }
  fmt::print("  {:<40} {:>7} {:>10.2f}   (per-node synchronized; the step's own time is above)\n", "total", "", total);
  return j;
}

// A prompt of random ordinary tokens followed by gen_length masks, as the first step of
// generate() sees it.
std::vector<int32_t> bench_sequence(const io::ModelConfig& c, int64_t L, int64_t gen) {
  std::mt19937 rng(1234);
  std::vector<int32_t> x(static_cast<size_t>(L), static_cast<int32_t>(c.mask_token_id));
  const int64_t vocab = std::min(c.vocab_size, c.mask_token_id > 0 ? c.mask_token_id : c.vocab_size);
  for (int64_t i = 0; i < L - gen; ++i) x[i] = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return x;
}

Measured measure(Model& m, int64_t L, const BenchFlags& f, const std::vector<std::byte>* hidden_in) {
  Measured r;
  r.L = L;
  const int64_t gen = std::min(f.gen_length, L - 1);
  auto x = bench_sequence(m.config(), L, gen);
  std::vector<int32_t> pos;
  for (int64_t i = L - gen; i < std::min(L, L - gen + f.block_length); ++i) pos.push_back(static_cast<int32_t>(i));
  r.M = static_cast<int64_t>(pos.size());
  r.pos0 = L - gen;
  StepRequest req;
  req.tokens = &x;
  req.head_pos = pos;
  req.hidden_in = hidden_in;
  try {
    for (int i = 0; i < f.warmup + f.iters; ++i) {
      StepStats st;
      r.last = m.step(req, &st);
      if (i >= f.warmup) r.ms.push_back(st.ms);
      r.arena = st.arena_bytes;
      r.peak_live = st.peak_live;
      r.avg_live = st.avg_live;
      r.mapped = st.mapped_bytes;
      r.chunks = st.chunks;
    }
  } catch (const Error& e) {
    r.error = e.what();
    return r;
  }
  if (f.op_times) {
    m.set_op_times(&r.op_times);
    m.step(req);
    m.set_op_times(nullptr);
  }
  std::vector<double> s = r.ms;
  std::sort(s.begin(), s.end());
  r.median_ms = s[s.size() / 2];
  r.tflops = graph_flops(m.graph(), Dims{r.L, r.M}) / (r.median_ms * 1e-3) / 1e12;
  r.device_peak = m.backend().peak_device_bytes();
  return r;
}

std::string chunk_summary(const Graph& g, const std::vector<int>& chunks) {
  std::map<std::string, int> most;
  for (size_t r = 0; r < chunks.size(); ++r) {
    if (chunks[r] <= 1) continue;
    const std::string kind = region_kind(g.regions[r].name);
    most[kind] = std::max(most[kind], chunks[r]);
  }
  if (most.empty()) return "none";
  std::string s;
  for (const auto& [k, c] : most) s += fmt::format("{}{}:{}", s.empty() ? "" : " ", k, c);
  return s;
}

void write_profile(const std::string& path, const Graph& g, const MemoryPlan& p) {
  std::ofstream out(path);
  MOSAIC_CHECK(out.good(), "--profile: cannot write '{}'", path);
  const bool csv = path.size() > 4 && path.substr(path.size() - 4) == ".csv";
  if (csv) {
    out << "node,region,op,live_bytes\n";
    for (size_t i = 0; i < g.nodes.size(); ++i)
      out << i << "," << g.regions[g.nodes[i].region].name << "," << op_name(g.nodes[i].op) << "," << p.live[i] << "\n";
    return;
  }
  nlohmann::json j;
  j["L"] = p.dims.L;
  j["M"] = p.dims.M;
  j["arena_bytes"] = p.arena_bytes();
  j["peak_live_bytes"] = p.peak_live;
  j["avg_live_bytes"] = p.avg_live_timed;
  j["avg_live_bytes_per_node"] = p.avg_live;
  const std::vector<double> cost = node_costs(g, p.dims, p.act_size);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    j["timeline"].push_back({{"node", i}, {"region", g.regions[g.nodes[i].region].name},
                             {"op", op_name(g.nodes[i].op)}, {"live_bytes", p.live[i]}, {"modeled_cost", cost[i]}});
  out << j.dump(1) << "\n";
}

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

void run_bench(const BenchFlags& f) {
  MOSAIC_CHECK(f.iters > 0 && f.warmup >= 0, "--iters must be > 0 and --warmup >= 0");
  MOSAIC_CHECK(f.block_length > 0 && f.gen_length >= f.block_length, "--gen-length must be >= --block-length > 0");
  const bool segmented = !f.segment.empty();
  MOSAIC_CHECK(segmented || (f.hidden_in.empty() && f.hidden_out.empty()),
               "--hidden-in and --hidden-out go with --segment");
  MOSAIC_CHECK(!segmented || (f.layers <= 0 && !f.max_tokens),
               "--segment does not combine with --layers or --max-tokens");
  Session s(f.session, true, f.layers);
  Model& m = s.model();
  const auto& cfg = m.config();
  std::vector<std::byte> hidden;  // the previous segment's hidden state, kept for every step
  int seg_first = 0, seg_end = cfg.n_layers;
  if (segmented) {
    std::tie(seg_first, seg_end) = parse_segment(f.segment, cfg.n_layers);
    MOSAIC_CHECK(parse_lengths(f.tokens).size() == 1, "--segment runs one length: give --tokens N");
    MOSAIC_CHECK(seg_first > 0 || f.hidden_in.empty(),
                 "--hidden-in: the first segment starts from the tokens, not from a hidden state");
    MOSAIC_CHECK(seg_first == 0 || !f.hidden_in.empty(),
                 "--segment {}: a segment after layer 0 needs --hidden-in FILE (the previous segment's --hidden-out)",
                 f.segment);
    MOSAIC_CHECK(seg_end < cfg.n_layers || f.hidden_out.empty(),
                 "--hidden-out: the last segment runs the head; there is no hidden state to hand on");
    MOSAIC_CHECK(seg_end == cfg.n_layers || !f.hidden_out.empty(),
                 "--segment {}: a segment that stops before the last layer needs --hidden-out FILE", f.segment);
    m.set_segment(seg_first, seg_end);
    if (!f.hidden_in.empty()) {
      const int64_t L = parse_lengths(f.tokens).front();
      auto file = io::SafetensorsFile::open(f.hidden_in);
      const io::TensorInfo* t = file.find("hidden");
      MOSAIC_CHECK(t, "--hidden-in '{}': no tensor 'hidden' (write one with --hidden-out)", f.hidden_in);
      MOSAIC_CHECK(t->dtype == act_dtype(s.backend()) && t->shape == std::vector<int64_t>({L, cfg.d_model}),
                   "--hidden-in '{}': 'hidden' is {} {}; this run needs {} [{}, {}] (same --tokens and backend as "
                   "the segment that wrote it)", f.hidden_in, dtype_name(t->dtype), fmt::join(t->shape, "x"),
                   dtype_name(act_dtype(s.backend())), L, cfg.d_model);
      hidden.assign(t->data, t->data + t->nbytes);
    }
    fmt::print(stderr, "mosaic: running layers {}..{} of {}{}\n", seg_first, seg_end - 1, cfg.n_layers,
               f.hidden_in.empty() ? "" : fmt::format(" from the hidden state in {}", f.hidden_in));
  }
  nlohmann::json out;
  out["model"] = m.dir();
  out["backend"] = s.backend_name();
  out["layers_run"] = f.layers > 0 ? f.layers : seg_end - seg_first;
  if (segmented) out["segment"] = {seg_first, seg_end};
  out["n_layers"] = cfg.n_layers;
  out["weights_bytes"] = s.backend().weight_bytes();
  out["activation_budget"] = m.activation_budget();
  out["chunk_min_rows"] = m.chunk_min_rows();
  out["tame_target"] = m.tame_target();

  std::vector<int64_t> lengths;
  if (!f.tokens.empty() && !f.max_tokens) lengths = parse_lengths(f.tokens);
  if (f.max_tokens) {
    const Graph& g = m.graph();
    auto t0 = std::chrono::steady_clock::now();
    int64_t fit = max_tokens_that_fit(g, f.block_length, s.backend().traits().act_size, m.activation_budget());
    double search_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(stderr, "mosaic: plan search: the largest L whose step fits {} of activations is {} ({:.0f} ms)\n",
               human_bytes(static_cast<double>(m.activation_budget())), fit, search_ms);
    out["max_tokens_planned"] = fit;
    // Confirmed by a real step below (at --confirm-tokens instead, when a step at the
    // planned maximum would take too long to wait for).
    lengths.push_back(f.confirm_tokens > 0 ? f.confirm_tokens : fit);
  }

  fmt::print("{:>9} {:>5} {:>10} {:>8} {:>11} {:>11} {:>11} {:>8} {:>11} {:>11}  {}\n", "tokens", "M", "ms/step",
             "TFLOP/s", "arena", "peak live", "avg live", "pk/avg", "mapped", "device", "chunks");
  for (int64_t L : lengths) {
    Measured r = measure(m, L, f, hidden.empty() ? nullptr : &hidden);
    nlohmann::json jr = {{"tokens", r.L}, {"masked", r.M}};
    if (!r.error.empty()) {
      fmt::print("{:>9} {:>5}  failed: {}\n", r.L, r.M, r.error);
      jr["error"] = r.error;
    } else {
      const Graph& g = m.graph();
      fmt::print("{:>9} {:>5} {:>10.2f} {:>8.1f} {:>11} {:>11} {:>11} {:>8.3f} {:>11} {:>11}  {}\n", r.L, r.M,
                 r.median_ms, r.tflops, human_bytes(static_cast<double>(r.arena)),
                 human_bytes(static_cast<double>(r.peak_live)), human_bytes(r.avg_live),
                 r.avg_live > 0 ? r.peak_live / r.avg_live : 0.0, human_bytes(static_cast<double>(r.mapped)),
                 human_bytes(static_cast<double>(r.device_peak)), chunk_summary(g, r.chunks));
      jr.update({{"ms_per_step", r.median_ms}, {"ms_all", r.ms}, {"tflops", r.tflops}, {"arena_bytes", r.arena},
                 {"peak_live_bytes", r.peak_live}, {"avg_live_bytes", r.avg_live}, {"mapped_bytes", r.mapped},
                 {"device_peak_bytes", r.device_peak}, {"chunks", chunk_summary(g, r.chunks)},
                 {"tame_floor", m.plan(Dims{r.L, r.M}).tame_floor}});
      if (f.op_times) jr["op_times"] = print_op_times(r.op_times);
      if (!f.hidden_out.empty()) {
        io::write_safetensors(f.hidden_out, "hidden", act_dtype(s.backend()), {r.L, cfg.d_model},
                              r.last.hidden.data(), r.last.hidden.size());
        fmt::print("  hidden state after layer {} ({}) -> {}\n", seg_end - 1,
                   human_bytes(static_cast<double>(r.last.hidden.size())), f.hidden_out);
      } else if (!r.last.order.empty()) {
        // What the step would commit first: evidence that it ran to the end.
        const int32_t i = r.last.order.front();
        fmt::print("  most confident masked row: position {} -> token {} (confidence {:.4g})\n", pos_of(r, i),
                   r.last.token[i], r.last.conf[i]);
        jr["first_commit"] = {{"position", pos_of(r, i)}, {"token", r.last.token[i]}, {"confidence", r.last.conf[i]}};
      }
      if (!f.profile_path.empty() && L == lengths.front())
        write_profile(f.profile_path, g, m.plan(Dims{r.L, r.M}));
    }
    out["results"].push_back(jr);
  }
  if (!f.json_path.empty()) {
    std::ofstream j(f.json_path);
    MOSAIC_CHECK(j.good(), "--json: cannot write '{}'", f.json_path);
    j << out.dump(2) << "\n";
  }
}

}  // namespace

void add_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* c = app.add_subcommand("bench", "Time one denoising step at given lengths; report memory; find the max length");
  add_session_flags(c, f->session);
  c->add_option("--tokens", f->tokens, "Comma-separated sequence lengths (prompt + generated), e.g. 4096,16k")
      ->capture_default_str();
  c->add_option("--gen-length", f->gen_length, "Masked tokens at the end of the sequence")->capture_default_str();
  c->add_option("--block-length", f->block_length, "Rows the head samples (the first block's masks)")
      ->capture_default_str();
  c->add_option("--warmup", f->warmup, "Untimed steps first")->capture_default_str();
  c->add_option("--iters", f->iters, "Timed steps; the median is reported")->capture_default_str();
  c->add_option("--layers", f->layers,
                "Run only the first N layers (all weights stay resident): to confirm the memory of very long "
                "steps quickly; times then cover N layers");
  c->add_flag("--max-tokens", f->max_tokens,
              "Find the largest length whose step fits the memory budget (plan search), then run it");
  c->add_option("--confirm-tokens", f->confirm_tokens,
                 "With --max-tokens: confirm with a real step at this length instead of the maximum found");
  c->add_flag("--op-times", f->op_times,
              "After the timed steps, run one more that waits for the device after every node and print where "
              "the step's time goes, by region, op and product");
  c->add_option("--segment", f->segment,
                 "Run only layers FIRST..END-1 of the step (FIRST:END, END may be left out), handing the hidden "
                 "state between segments through files: a step longer than one sitting runs in pieces");
  c->add_option("--hidden-in", f->hidden_in, "With --segment: the previous segment's hidden state (.safetensors)");
  c->add_option("--hidden-out", f->hidden_out, "With --segment: where to write this segment's hidden state");
  c->add_option("--json", f->json_path, "Also write the results as JSON");
  c->add_option("--profile", f->profile_path, "Write the first length's live-bytes timeline (.json or .csv)");
  c->callback([f] { run_bench(*f); });
}


}  // namespace mosaic::cli
