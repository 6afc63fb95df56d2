#include "cli/session.h"

#include <fmt/format.h>

#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"
#include "decode/dream_sampler.h"
#include "decode/llada2_sampler.h"
#include "decode/llada_sampler.h"

namespace mosaic::cli {

void add_session_flags(CLI::App* c, SessionFlags& f) {
  c->add_option("-m,--model", f.model,
                "Model directory (config.json, *.safetensors, tokenizer.json); default: the model shipped in "
                "models/");
  c->add_option("--backend", f.backend,
                "cpu | cuda | cuda-fp32 | auto (cuda when a GPU is usable). cuda-fp32 verifies: fp32 weights and "
                "math on the GPU, token-for-token with the CPU and the golden fixtures, at a fraction of cuda's speed")
      ->capture_default_str();
  c->add_option("--memory-budget", f.memory_budget,
                "Device memory mosaic may use in all (weights + activations): bytes like 80GiB, or a fraction "
                "of free memory like 0.9; default: all free memory");
  add_taming_flags(c, f.taming);
}

Session::Session(const SessionFlags& f, bool progress, int run_layers, const OffloadFlags* offload) {
  check_taming(f.taming);
  backend_name_ = resolve_backend(f.backend);
  backend_ = make_backend(backend_name_);
  const size_t free_before = backend_->free_memory();
  total_budget_ = f.memory_budget.empty() ? free_before : parse_memory(f.memory_budget, free_before, "--memory-budget");

  std::string dir = resolve_model_dir(f.model);
  size_t last_pct = 0;
  LoadProgress cb;
  if (progress)
    cb = [&](size_t done, size_t total, const std::string&) {
      size_t pct = total ? done * 100 / total : 100;
      if (total > (size_t{256} << 20) && (pct >= last_pct + 10 || done == total)) {
        last_pct = pct;
        fmt::print(stderr, "mosaic: loading weights {:3d}% ({} of {})\n", pct, human_bytes(static_cast<double>(done)),
                   human_bytes(static_cast<double>(total)));
      }
    };
  // An expert offload loads the routed experts into pinned host memory, then gives each MoE layer
  // its GPU slots (counted in the weights, so the activation budget is what remains).
  bool on_host = false;
  if (offload) {
    const io::ModelConfig peek = load_model_config((std::filesystem::path(dir) / "config.json").string());
    on_host = experts_on_host(*offload, peek, backend_->weight_elem_size());
  }
  model_ = std::make_unique<Model>(dir, *backend_, cb, run_layers, on_host);
  if (offload) {
    offload_ = make_offload(*offload, *model_, backend_name_);
    model_->set_offload(offload_.get());
  }
  const size_t used = backend_->weight_bytes() + backend_overhead(backend_name_);
  MOSAIC_CHECK(total_budget_ > used,
               "the memory budget {} does not even hold the weights ({}) and the {} backend's working memory; "
               "raise --memory-budget",
               human_bytes(static_cast<double>(total_budget_)), human_bytes(static_cast<double>(backend_->weight_bytes())),
               backend_name_);
  model_->set_activation_budget(total_budget_ - used);
  model_->set_taming(f.taming.min_rows, f.taming.target);

  auto tok_path = std::filesystem::path(dir) / "tokenizer.json";
  if (std::filesystem::exists(tok_path))
    tokenizer_ = std::make_unique<io::Tokenizer>(io::Tokenizer::load(tok_path.string()));
  if (progress)
    fmt::print(stderr, "mosaic: {} ({}, {} layers, d={}) on {}, weights {}, activation budget {}\n", dir,
               model_->config().family, model_->config().n_layers, model_->config().d_model,
               backend_name_, human_bytes(static_cast<double>(backend_->weight_bytes())),
               human_bytes(static_cast<double>(model_->activation_budget())));
  if (progress && offload_ && on_host)
    fmt::print(stderr, "mosaic: expert offload {}: {} of {} routed experts per MoE layer in GPU slots; every "
               "routed expert in host memory{}\n", offload::policy_name(offload_->policy()), offload_->slots(),
               offload_->experts(), backend_name_ == "cpu" ? " (the CPU backend simulates the device)"
               : fmt::format(", pinned ({})", human_bytes(static_cast<double>(backend_->host_weight_bytes()))));
}

const io::Tokenizer& Session::tokenizer() const {
  MOSAIC_CHECK(tokenizer_ != nullptr, "model directory '{}' has no tokenizer.json: pass --prompt-tokens instead of "
               "--prompt", model_->dir());
  return *tokenizer_;
}

std::vector<int32_t> Session::encode_plain(const std::string& text) const {
  std::vector<int32_t> ids;
  const auto& tok = tokenizer();
  if (tok.bos_id) ids.push_back(*tok.bos_id);
  auto body = tok.encode(text, true);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::unique_ptr<Sampler> default_sampler(const Model& m, int64_t prompt_length, int64_t gen_length, int64_t steps,
                                         int64_t block_length, const CacheOptions& cache, double threshold) {
  if (m.family().default_sampler() == SamplerKind::Llada2) {
    const io::ModelConfig& c = m.config();
    MOSAIC_CHECK(c.eos_token_id.has_value(), "{}: LLaDA2.0's generate() needs an eos_token_id", c.source);
    Llada2Options o;
    o.gen_length = gen_length;
    o.block_length = block_length;
    o.steps = std::max<int64_t>(1, steps / std::max<int64_t>(1, gen_length / block_length));
    o.threshold = threshold > 0.0 ? threshold : 1.0;
    o.cache = cache.mode;
    return std::make_unique<Llada2Sampler>(o, prompt_length, static_cast<int32_t>(*c.eos_token_id));
  }
  if (m.family().default_sampler() == SamplerKind::Llada) {
    GenerateOptions o;
    o.gen_length = gen_length;
    o.steps = steps;
    o.block_length = block_length;
    o.cache = cache;
    o.threshold = threshold;
    return std::make_unique<LladaSampler>(o);
  }
  DreamOptions o;
  o.gen_length = gen_length;
  o.steps = steps;
  o.block_length = block_length;
  o.alg = DreamAlg::Entropy;
  o.cache = cache;
  o.threshold = threshold;
  return std::make_unique<DreamSampler>(o);
}

}  // namespace mosaic::cli
