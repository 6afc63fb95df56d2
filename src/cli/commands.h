#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/format.h"
#include "io/model_config.h"
#include "parallel/sequence_shards.h"
#include "plan/memory_plan.h"

namespace mosaic::cli {

void add_generate(CLI::App& app);
void add_info(CLI::App& app);
void add_bench(CLI::App& app);
void add_eval(CLI::App& app);
void add_serve(CLI::App& app);
void add_chat(CLI::App& app);

// The process exit code a command asked for (0 unless it set one, e.g. info's 3).
int exit_code();
void set_exit_code(int code);

// --model when given, else the model that ships with mosaic.
std::string resolve_model_dir(const std::string& flag);
// "cuda" when this build has CUDA and a GPU answers, else "cpu"; or the flag's value.
std::string resolve_backend(const std::string& flag);

// "80GiB", "512MiB", "1.5GB", "123456" (bytes), or a fraction "0.9" of `free_bytes`.
size_t parse_memory(const std::string& text, std::optional<size_t> free_bytes, const char* flag);

// --chunk-min-rows and --tame-target: how far the planner tames a step's memory peak.
struct TamingFlags {
  int64_t min_rows = kTameMinRows;
  double target = kTameTarget;
};
void add_taming_flags(CLI::App* c, TamingFlags& f);
void check_taming(const TamingFlags& f);

// --sparse-keep / --sparse-kernel given while no --cache mode is sparse would do nothing:
// refused, naming the flag.
void check_sparse_flags(const std::vector<CLI::Option*>& flags, bool sparse);

// --exchange's value for a step of `model`'s config sharded across `ranks` (> 1; `ranks_text`
// says how they were given, e.g. "--gpus 8"): auto resolved, an all-to-all the heads do not
// split into `ranks` groups refused by flag.
parallel::Exchange exchange_for(const std::string& flag, const io::ModelConfig& c, const std::string& model,
                                int ranks, const std::string& ranks_text);

// Device memory a backend keeps outside weights and arena (context, BLAS/DNN workspaces).
size_t backend_overhead(const std::string& backend);

}  // namespace mosaic::cli
