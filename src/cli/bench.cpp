// mosaic bench: time one denoising step at given lengths (the first step of LLaDA's
// semi-autoregressive schedule: M = block-length masked rows reach the head) and report
// memory; --max-tokens searches the longest sequence whose step fits.
//
// This file holds the flags and runs the steps in order; the bench_*.cpp files do each part.
#include <algorithm>
#include <memory>
#include <sstream>

#include "cli/bench_internal.h"
#include "cli/commands.h"
#include "cli/session.h"
#include "core/error.h"

namespace mosaic::cli {

std::vector<int64_t> parse_lengths(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long long x = std::strtoll(item.c_str(), &end, 10);
    if (end && (*end == 'k' || *end == 'K')) x *= 1024, ++end;
    else if (end && (*end == 'm' || *end == 'M')) x *= 1024 * 1024, ++end;
    MOSAIC_CHECK(end && *end == '\0' && x > 0, "--tokens: '{}' is not a positive length (e.g. 4096,16k,1M)", item);
    v.push_back(x);
  }
  return v;
}

namespace {

void run_bench(const BenchFlags& flags) {
  BenchFlags f = flags;
  // --moe-stats alone: the routing statistics of the all-GPU run (placement never moves).
  if (f.offload_flags.moe_stats && f.offload.empty()) f.offload = "gpu";
  MOSAIC_CHECK(f.iters > 0 && f.warmup >= 0, "--iters must be > 0 and --warmup >= 0");
  MOSAIC_CHECK(f.block_length > 0 && f.gen_length >= f.block_length, "--gen-length must be >= --block-length > 0");
  check_segment_flags(f);
  MOSAIC_CHECK(f.routing_from.empty() || !f.offload.empty(),
               "--routing-from replays routing into --offload's generations: give --offload POLICIES with it");
  if (!f.offload.empty()) {
    MOSAIC_CHECK(!f.max_tokens && f.segment.empty() && !f.op_times && f.profile_path.empty() &&
                     std::none_of(f.step_flags.begin(), f.step_flags.end(), [](CLI::Option* o) { return o->count(); }),
                 "--offload runs whole generations: it does not combine with --max-tokens, --segment, --op-times, "
                 "--profile, --warmup or --iters (use --warmup-generations)");
    MOSAIC_CHECK(f.gen_length % f.block_length == 0, "--gen-length must be a multiple of --block-length");
  } else if (!f.cache.empty()) {
    const std::vector<CacheMode> modes = parse_cache_modes(f.cache);
    validate_cache_options({CacheMode::Sparse, f.sparse_keep, f.sparse_kernel});
    check_sparse_flags(f.sparse_flags, std::find(modes.begin(), modes.end(), CacheMode::Sparse) != modes.end());
    MOSAIC_CHECK(!f.max_tokens && f.segment.empty() && f.layers <= 0 && (!f.op_times || !f.batch.empty()) &&
                     f.profile_path.empty() &&
                     std::none_of(f.step_flags.begin(), f.step_flags.end(), [](CLI::Option* o) { return o->count(); }),
                 "--cache runs whole generations: it does not combine with --max-tokens, --segment, --layers, "
                 "--op-times (but for --batch's), --profile, --warmup or --iters (use --warmup-generations)");
    MOSAIC_CHECK(f.gen_length % f.block_length == 0, "--gen-length must be a multiple of --block-length");
  }
  const int ranks = static_cast<int>(rank_devices(f.session).size());
  MOSAIC_CHECK(ranks == 1 || (f.cache.empty() && f.batch.empty() && f.offload.empty() && f.segment.empty() &&
                                        !f.max_tokens),
               "--gpus {} times whole sharded steps: it does not combine with --cache, --batch, --offload, --segment "
               "or --max-tokens", ranks);
  MOSAIC_CHECK(f.batch.empty() || (!f.cache.empty() && f.offload.empty()),
               "--batch times whole generations: give --cache MODES with it (e.g. --cache dual --batch 1,4,16); it "
               "does not combine with --offload");
  // An offload bench without the all-GPU run loads only the offloaded model (experts on the host,
  // and with --layers only those layers: a model larger than the host, measured in part).
  const bool offload_only = !f.offload.empty() && ("," + f.offload + ",").find(",gpu,") == std::string::npos;
  Session s(f.session, true, f.layers, offload_only ? &f.offload_flags : nullptr);
  Model& m = s.model();
  const Segment seg = start_segment(s, f);
  nlohmann::json out = run_description(s, f, seg);

  std::vector<int64_t> lengths;
  if (!f.tokens.empty() && !f.max_tokens) lengths = parse_lengths(f.tokens);
  if (f.max_tokens) lengths.push_back(plan_max_tokens(s, f, out));

  if (!f.offload.empty()) {
    out["results"] = bench_offload(s, f, lengths);
    if (!f.json_path.empty()) write_json(f.json_path, out);
    return;
  }
  if (!f.batch.empty()) {
    out["results"] = bench_batches(m, f, lengths);
    if (!f.json_path.empty()) write_json(f.json_path, out);
    return;
  }
  if (!f.cache.empty()) {
    out["results"] = bench_generations(m, f, lengths);
    if (!f.json_path.empty()) write_json(f.json_path, out);
    return;
  }
  print_table_header();
  for (int64_t L : lengths) {
    Measured r = measure(m, L, f, seg.hidden.empty() ? nullptr : &seg.hidden);
    nlohmann::json jr = report_result(m, r, f.op_times);
    if (r.error.empty()) {
      if (!f.hidden_out.empty()) {
        write_hidden_out(s, f, seg, r);
      } else if (!r.last.order.empty()) {
        // What the step would commit first: evidence that it ran to the end.
        jr["first_commit"] = report_first_commit(r);
      }
      if (!f.profile_path.empty() && L == lengths.front())
        write_profile(f.profile_path, m.graph(), m.plan(r.dims));
    }
    out["results"].push_back(jr);
    if (m.ranks_aborted()) {
      fmt::print(stderr, "mosaic: a rank failed at {} tokens and the ranks' communicators were aborted: the lengths "
                 "after it are not run\n", L);
      break;
    }
  }
  if (!f.json_path.empty()) write_json(f.json_path, out);
}

}  // namespace

void add_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* c = app.add_subcommand("bench", "Time one denoising step at given lengths; report memory; find the max length");
  add_session_flags(c, f->session);
  add_gpus_flag(c, f->session);
  c->add_option("--tokens", f->tokens, "Comma-separated sequence lengths (prompt + generated), e.g. 4096,16k,1M")
      ->capture_default_str();
  c->add_option("--gen-length", f->gen_length, "Masked tokens at the end of the sequence")->capture_default_str();
  c->add_option("--block-length", f->block_length, "Rows the head samples (the first block's masks)")
      ->capture_default_str();
  f->step_flags = {c->add_option("--warmup", f->warmup, "Untimed steps first")->capture_default_str(),
                   c->add_option("--iters", f->iters, "Timed steps; the median is reported")->capture_default_str()};
  c->add_option("--layers", f->layers,
                "Run only the first N layers (all weights stay resident, except with --offload without gpu: then "
                "only those N layers load): to confirm the memory of very long steps quickly, or to measure a "
                "model larger than this machine in part; times then cover N layers");
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
  c->add_option("--offload", f->offload,
                "MoE models: time whole generations per expert placement, e.g. gpu,tide,static,lru,cpu (gpu: every "
                "routed expert on the device; tide: interval refresh; tide-lagged: all its copies behind the steps; static: the first step's placement; lru: "
                "fetch on miss; cpu: every routed expert on the CPU), with --gpu-experts N slots per layer, one "
                "--cache mode (default none), in one process on the same weights; reports tokens/s, hit rates, "
                "copies and each tide policy over the best baseline")
      ->group("Expert offload (MoE models; TIDE)");
  c->add_option("--routing-from", f->routing_from,
                "With --offload: first run one generation of this trained MoE model (its own weights, the same "
                "schedule and prompt length) recording its routing, then replay that routing into every timed run "
                "in place of the model's own router (its experts spread over this model's: see "
                "offload/routing_replay.h). For a shape with random weights, whose routing is far less stable than a "
                "trained model's")
      ->check(CLI::ExistingDirectory)
      ->group("Expert offload (MoE models; TIDE)");
  add_offload_flags(c, f->offload_flags, false);
  c->add_option("--cache", f->cache,
                "Time whole generations instead of single steps, for each listed cache mode (e.g. "
                "none,prefix,dual,sparse): one token per step, steps = --gen-length, blocks of --block-length; "
                "reports tokens/s and the speedup over the first mode")->capture_default_str();
  f->sparse_flags = {
      c->add_option("--sparse-keep", f->sparse_keep, "With --cache sparse: the fraction of outside positions kept")
          ->capture_default_str(),
      c->add_option("--sparse-kernel", f->sparse_kernel, "With --cache sparse: the max-pool width (odd)")
          ->capture_default_str(),
  };
  c->add_option("--batch", f->batch,
                "With --cache: time generations of this many sequences at once (e.g. 1,4,16), their steps in shared "
                "passes as the server runs them; reports aggregate tokens/s, per-sequence latency p50/p99 and the "
                "throughput over the first size; with --op-times, where one round's cached passes spend their time");
  c->add_option("--warmup-generations", f->warmup_generations, "With --cache: untimed generations first")
      ->capture_default_str();
  c->add_option("--json", f->json_path, "Also write the results as JSON");
  c->add_option("--profile", f->profile_path, "Write the first length's live-bytes timeline (.json or .csv)");
  c->callback([f] { run_bench(*f); });
}

}  // namespace mosaic::cli
