#pragma once
// What every model-running command sets up: a backend, the model with its weights loaded
// (with progress), the tokenizer when the model has one, and the memory budget.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cli/commands.h"
#include "cli/offload_flags.h"
#include "io/tokenizer.h"
#include "decode/sampler.h"
#include "models/model.h"
#include "parallel/rank_group.h"

namespace mosaic::cli {

struct SessionFlags {
  std::string model;
  std::string backend = "auto";
  std::string memory_budget;
  TamingFlags taming;
  int gpus = 1;  // > 1: every step's rows sharded across this many devices (add_gpus_flag)
  CLI::Option* gpus_flag = nullptr;  // given on the command line, or only the default
  std::string devices;  // --devices: the ranks' GPUs ("" : 0..gpus-1)
  std::string exchange = "auto";  // --exchange: how the ranks meet in attention (parallel::Exchange)
  CLI::Option* exchange_flag = nullptr;
};
// The ranks' devices --gpus and --devices ask for (one entry: no sharding).
std::vector<int> rank_devices(const SessionFlags& f);

void add_session_flags(CLI::App* c, SessionFlags& f);
// --gpus N and --devices LIST (generate, bench): context parallelism, Model::set_shards.
void add_gpus_flag(CLI::App* c, SessionFlags& f);

class Session {
 public:
  // offload: the expert-offload flags (MoE models), or null.
  Session(const SessionFlags& f, bool progress, int run_layers = -1, const OffloadFlags* offload = nullptr);
  Model& model() { return *model_; }
  Backend& backend() { return *backend_; }
  const std::string& backend_name() const { return backend_name_; }
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  const io::Tokenizer& tokenizer() const;
  // Plain (non-chat) prompt: BOS when the model has one, then the text.
  std::vector<int32_t> encode_plain(const std::string& text) const;
  size_t total_budget() const { return total_budget_; }
  // The expert offload the flags asked for (null: none); the model runs with it.
  offload::ExpertOffload* offload() const { return offload_.get(); }

 private:
  std::string backend_name_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<offload::ExpertOffload> offload_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<io::Tokenizer> tokenizer_;
  size_t total_budget_ = 0;
  // --gpus N: ranks 1.. (the model on devices 1..N-1) and every rank's communicator.
  std::vector<std::unique_ptr<Backend>> peer_backends_;
  std::vector<std::unique_ptr<Model>> peers_;
  std::unique_ptr<parallel::RankGroup> ranks_;
};

// The model family's sampler with its defaults (greedy; Dream: entropy; LLaDA2.0: `steps` in
// all, spread over its blocks, and threshold 1 unless one is given, so that the schedule
// decides), for measuring whole generations (bench --cache, eval --generate). Sequences start
// with its sequence_length().
std::unique_ptr<Sampler> default_sampler(const Model& m, int64_t prompt_length, int64_t gen_length, int64_t steps,
                                         int64_t block_length, const CacheOptions& cache, double threshold = 0.0);

}  // namespace mosaic::cli
