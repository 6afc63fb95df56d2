#pragma once
// What the files of `mosaic bench` share: its flags, one length's measurement, and the
// functions each file gives the others (bench.cpp runs them in order).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/executor.h"
#include "cli/session.h"
#include "decode/engine.h"
#include "models/model.h"

namespace mosaic::cli {

struct BenchFlags {
  SessionFlags session;
  std::string tokens = "4096,16384";
  int64_t gen_length = 256, block_length = 32;
  int warmup = 1, iters = 5, layers = -1;
  bool max_tokens = false, op_times = false;
  int64_t confirm_tokens = 0;
  std::string json_path, profile_path;
  std::string segment, hidden_in, hidden_out;
  // --cache: whole generations per cache mode (bench_generation.cpp) instead of single steps.
  std::string cache;
  double sparse_keep = 0.5;
  int sparse_kernel = 3;
  std::vector<CLI::Option*> sparse_flags;
  std::vector<CLI::Option*> step_flags;  // --warmup, --iters: single steps only
  int warmup_generations = 1;
  // --batch: with --cache, generations of several sequences in shared passes (bench_batch.cpp).
  std::string batch;
  // --offload: whole generations per expert placement (bench_offload.cpp).
  std::string offload;
  OffloadFlags offload_flags;
  std::string routing_from;  // --routing-from: a trained MoE model whose routing the runs replay
};

// --tokens: "4096,16k" -> {4096, 16384}.
std::vector<int64_t> parse_lengths(const std::string& s);

// bench_measure.cpp: the timed steps at one length.
struct Measured {
  int64_t L = 0, M = 0;
  Dims dims;  // the plan's: the step's, or with --gpus one rank's (the longest shard)
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

Measured measure(Model& m, int64_t L, const BenchFlags& f, const std::vector<std::byte>* hidden_in);

// bench_generation.cpp: --cache MODES. Prints the table; returns the JSON results.
std::vector<CacheMode> parse_cache_modes(const std::string& s);
nlohmann::json bench_generations(Model& m, const BenchFlags& f, const std::vector<int64_t>& lengths);
// A fixed random prompt of n tokens below the mask id.
std::vector<int32_t> random_prompt(const io::ModelConfig& c, int64_t n, uint32_t seed = 1234);

// bench_batch.cpp: --batch SIZES with --cache MODES. Prints the table; returns the JSON results.
nlohmann::json bench_batches(Model& m, const BenchFlags& f, const std::vector<int64_t>& lengths);
// One whole generation of the family's default sampler (one token per step), after
// --warmup-generations untimed ones: its result and the time per kind of step.
struct KindTime {
  int64_t steps = 0;
  double ms = 0;
};
struct TimedGeneration {
  GenerateResult result;
  std::map<CacheStep, KindTime> kinds;
  size_t arena = 0;
};
TimedGeneration timed_generation(Model& m, const std::vector<int32_t>& prompt, const BenchFlags& f,
                                 const CacheOptions& cache);

// bench_offload.cpp: --offload POLICIES, whole generations per expert placement (TIDE and its
// baselines), with --gpu-experts; prints the table; returns the JSON results.
nlohmann::json bench_offload(Session& s, const BenchFlags& f, const std::vector<int64_t>& lengths);

// bench_max_tokens.cpp: --max-tokens.
int64_t plan_max_tokens(Session& s, const BenchFlags& f, nlohmann::json& out);

// bench_segment.cpp: --segment, --hidden-in, --hidden-out.
struct Segment {
  int first = 0, end = 0;         // the layers run: [first, end)
  std::vector<std::byte> hidden;  // the previous segment's hidden state, kept for every step
};

void check_segment_flags(const BenchFlags& f);
Segment start_segment(Session& s, const BenchFlags& f);
void write_hidden_out(Session& s, const BenchFlags& f, const Segment& seg, const Measured& r);

// bench_report.cpp: the table on stdout, --json, --profile and --op-times.
nlohmann::json run_description(Session& s, const BenchFlags& f, const Segment& seg);
void print_table_header();
nlohmann::json report_result(Model& m, const Measured& r, bool op_times);
// Prints op times by kind of node, largest first; returns them as JSON.
nlohmann::json print_op_times(const OpTimes& t);
nlohmann::json report_first_commit(const Measured& r);
void write_profile(const std::string& path, const Graph& g, const MemoryPlan& p);
void write_json(const std::string& path, const nlohmann::json& out);

}  // namespace mosaic::cli
