#pragma once
// The expert-offload flags (TIDE) of generate: where the routed experts run when they do not all
// fit on the GPU, checked against the model, and the offload they make.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "models/model.h"
#include "offload/expert_offload.h"

namespace mosaic::cli {

struct OffloadFlags {
  int gpu_experts = -1;
  std::string expert_budget;
  std::string policy = "tide";
  std::string refresh_interval = "auto";
  bool moe_stats = false;
};

// policy false: without --offload (bench takes a list of policies under that name).
void add_offload_flags(CLI::App* c, OffloadFlags& f, bool policy = true);
// The options the flags give, checked (errors name the flag); nullopt slots: no offload.
offload::OffloadOptions offload_options(const OffloadFlags& f);
// Bytes of one routed expert (gate, up, down) on a backend that stores weights in elem_bytes.
double expert_bytes(const io::ModelConfig& c, size_t elem_bytes);
// The GPU slots per MoE layer the flags ask for on this config, checked (nullopt: no offload);
// from config.json alone, before the weights load.
std::optional<int> offload_slots(const OffloadFlags& f, const io::ModelConfig& c, size_t weight_elem);
// Whether the routed experts must load into host memory (an offload with fewer slots than experts).
bool experts_on_host(const OffloadFlags& f, const io::ModelConfig& c, size_t weight_elem);
// The offload the flags ask for on this model (null: none), with the cost model's measured inputs.
std::unique_ptr<offload::ExpertOffload> make_offload(const OffloadFlags& f, Model& m, const std::string& backend);

}  // namespace mosaic::cli
