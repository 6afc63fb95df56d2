// mosaic bench --offload POLICIES --gpu-experts N: whole generations of a MoE model per expert
// placement, in one process on the same weights and prompt: `gpu` (every routed expert on the
// device: the upper bound), `tide` (interval refresh, the copies that do not pay behind the
// steps; `tide-lagged` with all of them behind), and the baselines `static` (the first
// step's placement kept), `lru` (fetch on miss) and `cpu` (every routed expert on the CPU). The
// table gives tokens/s, the GPU hit rate, the copies, the refresh interval, the agreement of the
// tokens with the all-GPU run, and TIDE's speed over the best of the three baselines.
#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "cli/bench_internal.h"
#include "cli/commands.h"
#include "core/error.h"
#include "offload/measured_costs.h"
#include "offload/routing_replay.h"

namespace mosaic::cli {

namespace {

struct Row {
  std::string policy;
  double tps = 0;
};

// One generation of the --routing-from model with the bench's schedule, at a prompt of the same
// length (random tokens of its vocabulary), its routing recorded.
std::unique_ptr<offload::RoutingRecord> record_routing(Session& s, const BenchFlags& f, const CacheOptions& cache,
                                                       int64_t tokens) {
  Model trained(f.routing_from, s.backend(), LoadProgress{});
  const io::ModelConfig& t = trained.config();
  MOSAIC_CHECK(t.moe.experts > 0, "--routing-from {}: the model has no routed experts", f.routing_from);
  trained.set_activation_budget(std::min(trained.activation_budget(), s.model().activation_budget()));
  auto record = std::make_unique<offload::RoutingRecord>(static_cast<int>(t.moe.experts),
                                                         static_cast<int>(t.moe.experts_per_token), t.moe_layers());
  trained.set_routing_tap(record.get());
  BenchFlags once = f;
  once.warmup_generations = 0;
  timed_generation(trained, random_prompt(t, tokens - f.gen_length), once, cache);
  fmt::print(stderr, "mosaic: recorded {} steps of {}'s routing ({} MoE layers, {} experts, top {})\n",
             record->steps(), f.routing_from, record->layers(), record->experts(), record->top_k());
  return record;
}

}  // namespace

nlohmann::json bench_offload(Session& s, const BenchFlags& f, const std::vector<int64_t>& lengths) {
  std::vector<std::string> policies;
  std::stringstream ss(f.offload);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item != "gpu") {
      try {
        offload::parse_policy(item);
      } catch (const Error& e) {
        throw Error(fmt::format("bench {} (or gpu: every routed expert on the device)", e.what()));
      }
    }
    policies.push_back(item);
  }
  MOSAIC_CHECK(!policies.empty(), "--offload is empty: give policies such as gpu,tide,static,lru,cpu");
  const bool with_gpu = std::find(policies.begin(), policies.end(), "gpu") != policies.end();
  const io::ModelConfig& c = s.model().config();
  MOSAIC_CHECK(c.moe.experts > 0, "--offload: {} has no routed experts", c.source);
  const int E = static_cast<int>(c.moe.experts);
  OffloadFlags of = f.offload_flags;
  of.policy = "tide";
  const std::optional<int> slots = offload_slots(of, c, s.backend().weight_elem_size());
  const bool offloaded = std::any_of(policies.begin(), policies.end(), [](const std::string& p) { return p != "gpu"; });
  MOSAIC_CHECK(!offloaded || slots, "--offload {} needs --gpu-experts N or --expert-budget BYTES", f.offload);
  MOSAIC_CHECK(!offloaded || *slots < E, "--offload {}: --gpu-experts {} holds every one of the {} routed experts; "
               "give fewer (the gpu policy is the all-resident run)", f.offload, *slots, E);
  const int tau = offload::parse_refresh_interval(f.offload_flags.refresh_interval);
  const std::vector<int> layers = c.moe_layers(f.layers);  // the MoE layers run
  CacheOptions cache;
  if (!f.cache.empty()) {
    const std::vector<CacheMode> modes = parse_cache_modes(f.cache);
    MOSAIC_CHECK(modes.size() == 1, "--offload times one cache mode: give --cache none or --cache prefix");
    cache.mode = modes.front();
  }

  // The offloaded runs share one copy of the model with its routed experts in host memory: the
  // session's own without the all-GPU run, else a second one beside it.
  std::unique_ptr<Model> second;
  Model* part = with_gpu ? nullptr : &s.model();
  Model& all = s.model();
  offload::OffloadCosts costs;
  if (offloaded && with_gpu) {
    const size_t before = s.backend().weight_bytes();
    fmt::print(stderr, "mosaic: loading the routed experts into host memory for the offloaded runs\n");
    second = std::make_unique<Model>(all.dir(), s.backend(), LoadProgress{}, f.layers, true);
    part = second.get();
    const size_t extra = s.backend().weight_bytes() - before + static_cast<size_t>(expert_bytes(c, s.backend().weight_elem_size()) * layers.size() * *slots);
    MOSAIC_CHECK(all.activation_budget() > extra, "--offload: the device cannot hold a second copy of the model's "
                 "non-expert weights and {} slots per layer next to the all-GPU one", *slots);
    // Both models share the device: each plans its steps in what the other leaves.
    part->set_activation_budget(all.activation_budget() - extra);
    all.set_activation_budget(all.activation_budget() - extra);
    part->set_taming(all.chunk_min_rows(), all.tame_target());
  }
  if (offloaded) {
    costs = offload::measure_costs(s.backend(), c.d_model, c.moe.ffn_hidden);
    fmt::print(stderr, "mosaic: measured host-to-device {:.2f} GB/s; CPU expert {:.1f} us + {:.1f} us per further row\n",
               costs.h2d_bytes_per_s / 1e9, costs.cpu_s_per_expert * 1e6, costs.cpu_s_per_row * 1e6);
  }

  nlohmann::json results = nlohmann::json::array();
  fmt::print("{:>9} {:>11} {:>6} {:>6} {:>9} {:>9} {:>8} {:>7} {:>9} {:>8} {:>7}\n", "tokens", "policy", "slots", "tau",
             "total s", "tokens/s", "hit rate", "copies", "cpu pairs", "overlap", "agree");
  for (int64_t L : lengths) {
    MOSAIC_CHECK(L > f.gen_length, "--tokens {} leaves no prompt before --gen-length {}", L, f.gen_length);
    const std::vector<int32_t> prompt = random_prompt(c, L - f.gen_length);
    std::unique_ptr<offload::RoutingRecord> record;
    std::unique_ptr<offload::RoutingReplay> replay;
    if (!f.routing_from.empty()) {
      record = record_routing(s, f, cache, L);
      replay = std::make_unique<offload::RoutingReplay>(*record, E, static_cast<int>(c.moe.experts_per_token), layers);
      fmt::print(stderr, "mosaic: {}\n", replay->describe());
      all.set_routing_tap(replay.get());
      if (part) part->set_routing_tap(replay.get());
    }
    std::vector<int32_t> gpu_tokens;
    std::vector<Row> rows;
    for (const std::string& name : policies) {
      const bool on_gpu = name == "gpu";
      Model& m = on_gpu ? all : *part;
      const offload::Policy policy = on_gpu ? offload::Policy::Static : offload::parse_policy(name);
      const int n = on_gpu ? E : name == "cpu" ? 0 : *slots;
      nlohmann::json jr = {{"tokens", L}, {"policy", name}, {"gpu_experts", n}, {"gen_length", f.gen_length},
                           {"block_length", f.block_length}, {"cache", cache_mode_name(cache.mode)},
                           {"routing", f.routing_from.empty() ? std::string("own") : "replayed from " + f.routing_from}};
      try {
        // Warm up with a throwaway placement, then time a fresh one (its statistics are the
        // timed generation's). The CPU's cost per expert as the warm-up ran it carries over.
        BenchFlags once = f;
        once.warmup_generations = 0;
        offload::OffloadCosts seen = costs;
        for (int rep = 0; rep < f.warmup_generations; ++rep) {
          offload::ExpertOffload warm(policy, E, n, layers, offload::refreshes_on_interval(policy) ? std::max(tau, 1) : 0);
          warm.set_costs(seen);
          warm.calibrate_cpu(true);
          m.set_offload(&warm);
          if (replay) replay->restart();
          timed_generation(m, prompt, once, cache);
          seen = warm.costs();
        }
        offload::ExpertOffload off(policy, E, n, layers, tau);
        off.set_costs(seen);
        off.calibrate_cpu(true);
        m.set_offload(&off);
        if (replay) replay->restart();
        const TimedGeneration t = timed_generation(m, prompt, once, cache);
        const GenerateResult& r = t.result;
        m.set_offload(nullptr);
        const double tps = static_cast<double>(f.gen_length) / (r.total_ms / 1000);
        const std::vector<int32_t> gen(r.tokens.begin() + r.prompt_length, r.tokens.end());
        if (on_gpu) gpu_tokens = gen;
        int64_t same = 0;
        for (size_t i = 0; i < std::min(gen.size(), gpu_tokens.size()); ++i) same += gen[i] == gpu_tokens[i];
        int64_t pairs = 0, gpu_pairs = 0, copies = 0, behind = 0;
        double overlap = 0;
        for (int l : layers) {
          const offload::LayerStats& st = off.stats(l);
          pairs += st.pairs, gpu_pairs += st.gpu_pairs, copies += st.swaps, behind += st.behind;
          overlap += st.overlap() / static_cast<double>(layers.size());
        }
        const double hit = pairs ? static_cast<double>(gpu_pairs) / static_cast<double>(pairs) : 0.0;
        // auto's choice comes at the second block: a one-block run only traced (refreshed every step).
        const std::string tau_s = !offload::refreshes_on_interval(policy)         ? "-"
                                  : tau == 0 && !off.tau_choice()                 ? "trace"
                                  : off.refresh_interval() == 0                   ? "never"
                                                                                  : std::to_string(off.refresh_interval());
        fmt::print("{:>9} {:>11} {:>6} {:>6} {:>9.2f} {:>9.2f} {:>8.3f} {:>7} {:>9} {:>8.3f} {:>7}\n", L, name, n, tau_s,
                   r.total_ms / 1000, tps, hit, copies, pairs - gpu_pairs, overlap,
                   gpu_tokens.empty() ? std::string("-") : fmt::format("{:.3f}", static_cast<double>(same) / static_cast<double>(gen.size())));
        if (off.tau_choice()) fmt::print(stderr, "{}", off.tau_choice()->explain(off.costs()));
        if (f.offload_flags.moe_stats) fmt::print(stderr, "{}", off.report());
        rows.push_back({name, tps});
        jr["total_ms"] = r.total_ms;
        jr["tokens_per_s"] = tps;
        jr["gpu_hit_rate"] = hit;
        jr["copies"] = copies;
        jr["copies_behind"] = behind;
        jr["cpu_pairs"] = pairs - gpu_pairs;
        jr["routed_pairs"] = pairs;
        jr["overlap_with_previous_step"] = overlap;
        jr["refresh_interval"] = off.refresh_interval();
        if (!gpu_tokens.empty()) jr["agreement_with_gpu"] = static_cast<double>(same) / static_cast<double>(gen.size());
      } catch (const Error& e) {
        m.set_offload(nullptr);
        fmt::print("{:>9} {:>11}  failed: {}\n", L, name, e.what());
        jr["error"] = e.what();
        set_exit_code(1);
      }
      results.push_back(jr);
    }
    all.set_routing_tap(nullptr);
    if (part) part->set_routing_tap(nullptr);
    double best = 0;
    std::string best_name;
    for (const Row& r : rows)
      if ((r.policy == "static" || r.policy == "lru" || r.policy == "cpu") && r.tps > best) best = r.tps, best_name = r.policy;
    for (const Row& r : rows)
      if (r.policy.starts_with("tide") && r.tps > 0 && best > 0)
        fmt::print("{:>9} {} / best baseline ({}): {:.2f}x\n", L, r.policy, best_name, r.tps / best);
  }
  return results;
}

}  // namespace mosaic::cli
