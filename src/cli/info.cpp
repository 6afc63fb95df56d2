// mosaic info: the model summary and the memory plan of one step, from a model directory
// or from a config.json alone (capacity planning without weights or a GPU).
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "cli/commands.h"
#include "cli/offload_flags.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "models/family.h"
#include "models/blocks.h"
#include "models/generation_plan.h"
#include "plan/memory_plan.h"

namespace mosaic::cli {

namespace {

struct InfoFlags {
  std::string model, config, backend = "auto", memory_budget;
  int64_t tokens = 4096, masked = 32, block = 32;
  std::vector<CLI::Option*> sparse_flags;
  CLI::Option* block_flag = nullptr;
  TamingFlags taming;
  bool plan = false, guided = false;
  std::string cache = "none";
  double sparse_keep = 0.5;
  int sparse_kernel = 3;
  int gpu_experts = -1;
  std::string expert_budget, host_memory;
  int gpus = 1;
  std::string exchange = "auto";
  CLI::Option* exchange_flag = nullptr;
};

// One GPU's step when L tokens are sharded across `ranks` (1: the whole step).
Dims rank_dims(int64_t L, int64_t M, int ranks) { return ranks <= 1 ? Dims{L, M} : sharded_step_dims(L, M, ranks); }

// `info --cache MODE`: the plan of every kind of step a cached generation takes, the caches'
// bytes, whether it fits and the longest sequence that would.
void print_generation_plan(const InfoFlags& f, const io::ModelConfig& config, const GraphOptions& go,
                           std::optional<size_t> budget) {
  CacheOptions cache{parse_cache_mode(f.cache), f.sparse_keep, f.sparse_kernel};
  validate_cache_options(cache);
  MOSAIC_CHECK(f.block > 0 && f.block < f.tokens, "--block must be in [1, --tokens) (got {})", f.block);
  GenerationPlanner planner{config, go, cache, budget.value_or(SIZE_MAX), f.taming.min_rows, f.taming.target};
  const GenerationShape shape{f.tokens, f.block, std::min(f.masked, f.block)};
  const GenerationPlan gp = planner.plan(shape);
  fmt::print("\ngeneration  {} tokens, blocks of {}, {} cache{}\n", f.tokens, f.block, cache_mode_name(cache.mode),
             cache.mode == CacheMode::Sparse ? fmt::format(" (keep {}, kernel {})", cache.sparse_keep, cache.sparse_kernel)
                                             : std::string());
  fmt::print("caches      {} (every layer's keys and values{})\n", human_bytes(static_cast<double>(gp.cache_bytes)),
             go.guided ? ", both trunks" : "");
  for (const StepKindPlan& k : gp.steps) {
    const char* name = k.step == CacheStep::Store ? "store" : k.step == CacheStep::Cached ? "cached" : "full";
    if (k.plan)
      fmt::print("step {:<7}L={} M={}: arena {}, peak live {}\n", name, k.dims.L, k.dims.M,
                 human_bytes(static_cast<double>(k.plan->arena_bytes())),
                 human_bytes(static_cast<double>(k.plan->peak_live)));
    else
      fmt::print("step {:<7}L={} M={}: does not fit\n", name, k.dims.L, k.dims.M);
  }
  if (!budget) return;
  fmt::print("fits        {}   (longest sequence that fits with this cache and block: {} tokens)\n",
             gp.fits ? "yes" : "NO", planner.max_tokens(shape));
  if (!gp.fits) set_exit_code(3);
}

void run_info(const InfoFlags& f) {
  MOSAIC_CHECK(f.model.empty() != f.config.empty() || (f.model.empty() && f.config.empty()),
               "give --model DIR or --config FILE, not both");
  MOSAIC_CHECK(f.tokens > 0, "--tokens must be positive");
  MOSAIC_CHECK(f.masked >= 0 && f.masked <= f.tokens, "--masked must be in [0, --tokens]");
  const CacheMode cache = parse_cache_mode(f.cache);
  MOSAIC_CHECK(cache != CacheMode::None || f.block_flag->count() == 0,
               "--block plans a cached generation: it needs --cache prefix, dual or sparse");
  check_sparse_flags(f.sparse_flags, cache == CacheMode::Sparse);
  MOSAIC_CHECK(f.gpus == 1 || (cache == CacheMode::None && f.gpu_experts == -1 && f.expert_budget.empty()),
               "--gpus {} plans a sharded step: it runs without a cache or an expert offload", f.gpus);
  MOSAIC_CHECK(f.tokens >= f.gpus, "--tokens {} cannot be sharded across --gpus {} (a row per GPU at least)", f.tokens,
               f.gpus);
  std::string backend = f.backend;
  if (backend == "auto") backend = f.config.empty() ? resolve_backend("auto") : "cuda";
  const BackendTraits traits = traits_of(backend);

  io::ModelConfig config;
  bool fused = false;
  std::string source;
  if (!f.config.empty()) {
    config = load_model_config(f.config);
    source = f.config;
  } else {
    std::string dir = resolve_model_dir(f.model);
    config = load_model_config((std::filesystem::path(dir) / "config.json").string());
    auto ck = io::Checkpoint::open(dir);
    fused = family_of(config).fused_qkv(config, ck);
    source = dir;
  }
  const size_t weight_elem = traits.act_size;  // weights are stored in the activation type
  size_t weights = static_cast<size_t>(config.n_params()) * weight_elem;
  // Expert offload: the routed experts' master copies in pinned host memory, `slots` of each MoE
  // layer's also on the GPU; the rest of the weights on the GPU.
  std::optional<int> slots;
  size_t host_bytes = 0, slot_bytes = 0, nonexpert_bytes = weights;
  int moe_layers = 0;
  const double one_expert = expert_bytes(config, weight_elem);
  if (config.moe.experts > 0) {
    moe_layers = static_cast<int>(config.moe_layers().size());
    host_bytes = static_cast<size_t>(one_expert * moe_layers * static_cast<double>(config.moe.experts));
    nonexpert_bytes = weights - host_bytes;
  }
  if (f.gpu_experts != -1 || !f.expert_budget.empty()) {
    OffloadFlags of;
    of.gpu_experts = f.gpu_experts;
    of.expert_budget = f.expert_budget;
    slots = offload::gpu_slots(offload_options(of), config, one_expert);
    slot_bytes = static_cast<size_t>(one_expert * moe_layers * *slots);
    weights = nonexpert_bytes + slot_bytes;
  }
  MOSAIC_CHECK(f.host_memory.empty() || slots, "--host-memory checks an expert offload: give --gpu-experts or "
               "--expert-budget");
  MOSAIC_CHECK(f.gpus > 1 || f.exchange_flag->count() == 0,
               "--exchange {} plans how the GPUs of --gpus N (N > 1) meet; give --gpus", f.exchange);
  const parallel::Exchange exchange =
      f.gpus > 1 ? exchange_for(f.exchange, config, source, f.gpus, fmt::format("--gpus {}", f.gpus))
                 : parallel::Exchange::AllGather;

  fmt::print("model       {} ({})\n", source, config.family);
  fmt::print("layers      {}   d_model {}   heads {} (kv {})   head_dim {}   ffn {}\n", config.n_layers, config.d_model,
             config.n_heads, config.n_kv_heads, config.head_dim, config.ffn_hidden);
  fmt::print("vocab       {} (embedding rows {})   mask id {}   rope theta {}\n", config.vocab_size, config.embedding_size,
             config.mask_token_id, config.rope_theta);
  if (config.moe.experts > 0) {
    const io::MoeConfig& m = config.moe;
    fmt::print("moe         {} of {} layers: {} experts of ffn {}, {} per token ({} router{}){}\n", moe_layers,
               config.n_layers, m.experts, m.ffn_hidden, m.experts_per_token,
               m.sigmoid_groups ? "sigmoid, group-limited" : "softmax", m.expert_bias ? ", expert bias" : "",
               m.shared_ffn_hidden > 0 ? fmt::format(", shared expert of ffn {}", m.shared_ffn_hidden) : "");
    // Rows per expert depend on the routing: the plan takes the bound.
    fmt::print("            planned at the bound: scratch of rows x {} floats per MoE region (every (row, expert) "
               "pair's activations for the grouped GEMMs; one expert reached by all of a chunk's rows)\n",
               moe_workspace_floats(config));
  }
  fmt::print("parameters  {:.3f} B   weights on {}: {}\n", config.n_params() / 1e9, backend,
             human_bytes(static_cast<double>(slots ? nonexpert_bytes + host_bytes : weights)));
  if (slots) {
    fmt::print("offload     {} of {} routed experts per MoE layer on the GPU ({} each, {} layers): on the device "
               "{} = {} outside the routed experts + {} of expert slots; in pinned host memory {} (every routed "
               "expert)\n", *slots, config.moe.experts, human_bytes(one_expert), moe_layers,
               human_bytes(static_cast<double>(weights)), human_bytes(static_cast<double>(nonexpert_bytes)),
               human_bytes(static_cast<double>(slot_bytes)), human_bytes(static_cast<double>(host_bytes)));
    if (!f.host_memory.empty()) {
      const size_t host = parse_memory(f.host_memory, std::nullopt, "--host-memory");
      fmt::print("host        {} of {}: {}\n", human_bytes(static_cast<double>(host_bytes)),
                 human_bytes(static_cast<double>(host)), host_bytes <= host ? "fits" : "does NOT fit");
      if (host_bytes > host) set_exit_code(3);
    }
  }

  GraphOptions go;
  go.guided = f.guided;
  go.fused_qkv = fused;
  go.traits = traits;
  go.sharded = f.gpus > 1;
  go.ranks = go.sharded ? f.gpus : 0;
  go.exchange = exchange;
  Graph g = build_step_graph(config, go);
  const Dims d = rank_dims(f.tokens, f.masked, f.gpus);

  std::optional<size_t> budget;
  if (!f.memory_budget.empty()) {
    std::optional<size_t> free_bytes;
    if (f.config.empty() && f.memory_budget.find_first_not_of("0123456789.") == std::string::npos)
      free_bytes = make_backend(backend)->free_memory();
    size_t total = parse_memory(f.memory_budget, free_bytes, "--memory-budget");
    size_t fixed = weights + backend_overhead(backend);
    MOSAIC_CHECK(total > fixed, "--memory-budget {} does not hold the weights ({}) plus the {} backend's working "
                 "memory ({})", human_bytes(static_cast<double>(total)), human_bytes(static_cast<double>(weights)),
                 backend, human_bytes(static_cast<double>(backend_overhead(backend))));
    budget = total - fixed;
  }

  auto t0 = std::chrono::steady_clock::now();
  check_taming(f.taming);
  // Without a budget, plan as the engine does with unlimited memory: taming still applies.
  std::optional<MemoryPlan> plan = try_plan_for_budget(g, d, traits.act_size, budget.value_or(SIZE_MAX), f.taming.min_rows,
                                                       f.taming.target);
  double plan_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const MemoryPlan& p = plan ? *plan : make_plan(g, d, std::vector<int>(g.regions.size(), 1), traits.act_size);
  if (!plan) plan.emplace(p);

  fmt::print("\nstep        L={} tokens, M={} head rows{}; graph {} nodes, {} tensors, {} regions\n", f.tokens,
             f.masked, f.guided ? ", guidance" : "", g.nodes.size(), g.tensors.size(), g.regions.size());
  if (f.gpus > 1)
    fmt::print("gpus        {}: each runs {} rows at most (the plan below, per GPU: the longest shard with {} head "
               "rows) and holds all the weights; {}\n",
               f.gpus, d.L, d.M,
               go.exchange == parallel::Exchange::AllToAll
                   ? fmt::format("all-to-all: each layer attends over all {} rows of its {} of {} heads", d.K,
                                 config.n_heads / f.gpus, config.n_heads)
                   : fmt::format("all-gather: each layer gathers every GPU's keys and values ({} rows)", d.K));
  fmt::print("arena       {}\n", human_bytes(static_cast<double>(p.arena_bytes())));
  fmt::print("peak live   {}   (node {}: {} in {})\n", human_bytes(static_cast<double>(p.peak_live)), p.peak_node,
             op_name(g.nodes[p.peak_node].op), g.regions[g.nodes[p.peak_node].region].name);
  fmt::print("avg live    {} over the step's modeled time (peak/avg {:.3f}); {} per node (peak/avg {:.3f})\n",
             human_bytes(p.avg_live_timed), p.peak_to_average(), human_bytes(p.avg_live), p.peak_to_node_average());
  fmt::print("plan time   {:.2f} ms (plan + chunk search)\n", plan_ms);
  std::map<std::string, std::map<int, int>> chunking;  // kind -> chunks -> regions
  for (size_t r = 0; r < g.regions.size(); ++r)
    if (p.chunks[r] > 1) ++chunking[region_kind(g.regions[r].name)][p.chunks[r]];
  if (chunking.empty()) {
    fmt::print("chunking    none\n");
  } else {
    for (const auto& [kind, m] : chunking)
      for (const auto& [c, n] : m) fmt::print("chunking    {} x{}: {} chunks\n", kind, n, c);
  }
  if (p.tame_floor > 0)
    fmt::print("taming      floor {} rows (goal: peak/avg <= {:.2f}{})\n", p.tame_floor, f.taming.target,
               f.taming.target > 0 ? "" : ", off");
  for (const auto& line : p.search_log) fmt::print("  search: {}\n", line);

  if (budget) {
    size_t total = *budget + weights + backend_overhead(backend);
    fmt::print("budget      {} in all = weights {} + working {} + activations {}\n",
               human_bytes(static_cast<double>(total)), human_bytes(static_cast<double>(weights)),
               human_bytes(static_cast<double>(backend_overhead(backend))), human_bytes(static_cast<double>(*budget)));
    const bool fits = p.arena_bytes() <= *budget;
    int64_t max_l = 0;
    if (f.gpus > 1) {  // the sharded step's L: every rank's shard must fit (the longest is planned)
      auto fits_l = [&](int64_t L) {
        return try_plan_for_budget(g, rank_dims(L, f.masked, f.gpus), traits.act_size, *budget, kTameMinRows, 0.0)
            .has_value();
      };
      max_l = largest_fitting(std::max<int64_t>(f.gpus, f.masked), std::max<int64_t>(f.tokens, 2), fits_l);
    } else {
      max_l = max_tokens_that_fit(g, d.M, traits.act_size, *budget, std::max<int64_t>(d.L, 2));
    }
    fmt::print("fits        {}   (largest L that fits with M={}{}: {})\n", fits ? "yes" : "NO", f.masked,
               f.gpus > 1 ? fmt::format(" on {} GPUs", f.gpus) : "", max_l);
    fmt::print("device peak {} expected (weights + working + arena){}\n",
               human_bytes(static_cast<double>(weights + backend_overhead(backend) + p.arena_bytes())),
               f.gpus > 1 ? " on each GPU" : "");
    if (slots) {
      // The most slots this step leaves room for: the budget less everything but the slots.
      const double room = static_cast<double>(total) - static_cast<double>(nonexpert_bytes) -
                          static_cast<double>(backend_overhead(backend)) - static_cast<double>(p.arena_bytes());
      const int64_t most = room < 0 ? 0 : std::min<int64_t>(config.moe.experts,
                                                            static_cast<int64_t>(room / (one_expert * moe_layers)));
      fmt::print("gpu experts at most {} per MoE layer fit this budget with this step\n", most);
    }
    if (!fits) set_exit_code(3);
  }

  if (f.cache != "none") print_generation_plan(f, config, go, budget);

  if (f.plan) {
    fmt::print("\n{:>5}  {:<20} {:<12} {:>12}  timeline\n", "node", "region", "op", "live");
    const double scale = p.peak_live ? 50.0 / static_cast<double>(p.peak_live) : 0;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const Node& n = g.nodes[i];
      int bar = static_cast<int>(static_cast<double>(p.live[i]) * scale + 0.5);
      fmt::print("{:>5}  {:<20} {:<12} {:>12}  {}\n", i, g.regions[n.region].name, op_name(n.op),
                 human_bytes(static_cast<double>(p.live[i])), std::string(static_cast<size_t>(bar), '#'));
    }
  }
}

}  // namespace

void add_info(CLI::App& app) {
  auto f = std::make_shared<InfoFlags>();
  CLI::App* c = app.add_subcommand(
      "info", "Model summary and the memory plan of one denoising step (exit 3 if it does not fit the budget)");
  c->add_option("-m,--model", f->model, "Model directory (default: the shipped model)");
  c->add_option("--config", f->config, "Plan from a config.json alone: no weights, no GPU needed");
  c->add_option("--tokens,-L", f->tokens, "Sequence length L (prompt + generated)")->capture_default_str();
  c->add_option("--masked,-M", f->masked, "Rows that reach the LM head (masked candidates)")->capture_default_str();
  c->add_option("--backend", f->backend, "Plan for cpu (f32), cuda (bf16) or cuda-fp32; auto: cuda for --config")
      ->capture_default_str();
  c->add_option("--memory-budget", f->memory_budget,
                "Device memory in all (weights + activations), e.g. 80GiB; enables chunking and the fit check");
  c->add_flag("--plan", f->plan, "Print the live-bytes timeline per node");
  add_taming_flags(c, f->taming);
  c->add_option("--cache", f->cache, "Also plan a cached generation of --tokens in blocks of --block: none | "
                "prefix | dual | sparse (every kind of step it takes, its caches, and the longest that fits)")
      ->capture_default_str();
  f->block_flag = c->add_option("--block", f->block, "Block length of the cached generation")->capture_default_str();
  f->sparse_flags = {
      c->add_option("--sparse-keep", f->sparse_keep, "sparse cache: the fraction of outside positions kept")
          ->capture_default_str(),
      c->add_option("--sparse-kernel", f->sparse_kernel, "sparse cache: the max-pool width (odd)")
          ->capture_default_str(),
  };
  c->add_option("--gpu-experts", f->gpu_experts, "MoE: plan an expert offload with this many routed experts per "
                "layer on the GPU (the rest in pinned host memory); with --memory-budget, says the most that fit")
      ->group("Expert offload");
  c->add_option("--expert-budget", f->expert_budget, "MoE: GPU bytes for expert slots in all, instead of --gpu-experts")
      ->group("Expert offload");
  c->add_option("--host-memory", f->host_memory, "Host memory for the routed experts' pinned copies, e.g. 256GiB: "
                "checked (exit 3 if they do not fit)")->group("Expert offload");
  c->add_option("--gpus", f->gpus, "Plan the step sharded across this many GPUs (generate --gpus): one rank's plan, "
                "and with --memory-budget (per GPU) the longest step that fits them")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  f->exchange_flag = c->add_option("--exchange", f->exchange, "With --gpus: plan the all-to-all (Ulysses) or the "
                                   "all-gather attention exchange (generate --exchange); auto: the one that holds "
                                   "less per GPU")
                         ->check(CLI::IsMember({"auto", "all-gather", "all-to-all"}))
                         ->capture_default_str();
  c->add_flag("--guided", f->guided, "Plan the classifier-free-guidance step (two trunks, as generate --cfg-scale > 0 runs)");
  c->callback([f] { run_info(*f); });
}

}  // namespace mosaic::cli
