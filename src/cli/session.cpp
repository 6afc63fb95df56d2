#include "cli/session.h"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <thread>

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

void add_gpus_flag(CLI::App* c, SessionFlags& f) {
  f.gpus_flag = c->add_option("--gpus", f.gpus,
                "Shard every step's rows across this many GPUs of this host (devices 0..N-1; the weights on each; "
                "each layer's attention exchanges over NCCL, see --exchange): for steps too long or too slow for one "
                "GPU. Runs without a cache. With --backend cpu, N ranks run as threads of this process")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  c->add_option("--devices", f.devices,
                "The GPUs of --gpus' ranks, comma-separated (default 0,1,..,N-1; sets N). One GPU may be given for "
                "every rank (0,0): the ranks share it and copy instead of using NCCL, for testing the sharding on one "
                "GPU");
  f.exchange_flag =
      c->add_option("--exchange", f.exchange,
                    "How --gpus' ranks meet in each layer's attention. all-to-all (Ulysses): each GPU gets every row "
                    "of its N-th of the heads (q, k, v), attends there and sends the output back; it holds those four "
                    "for every row (the heads must split into N groups). all-gather: each GPU gathers every GPU's "
                    "keys and values and holds them for every row (any N). auto: the one that holds less (the "
                    "all-to-all for LLaDA-8B on 4 or more GPUs; the all-gather for models with few key/value heads)")
          ->check(CLI::IsMember({"auto", "all-gather", "all-to-all"}))
          ->capture_default_str();
}

std::vector<int> rank_devices(const SessionFlags& f) {
  std::vector<int> devices;
  if (f.devices.empty()) {
    for (int r = 0; r < f.gpus; ++r) devices.push_back(r);
    return devices;
  }
  size_t at = 0;
  while (at <= f.devices.size()) {
    const size_t comma = std::min(f.devices.find(',', at), f.devices.size());
    const std::string item = f.devices.substr(at, comma - at);
    char* end = nullptr;
    const long d = std::strtol(item.c_str(), &end, 10);
    MOSAIC_CHECK(!item.empty() && end && *end == '\0' && d >= 0 && d < 1024,
                 "--devices: '{}' is not a device number (e.g. --devices 0,1,2,3)", item);
    devices.push_back(static_cast<int>(d));
    at = comma + 1;
  }
  MOSAIC_CHECK(devices.size() <= 64, "--devices: {} ranks; at most 64", devices.size());
  MOSAIC_CHECK(!(f.gpus_flag && f.gpus_flag->count() > 0) || f.gpus == static_cast<int>(devices.size()),
               "--gpus {} and --devices {} ({} devices) disagree; --devices alone sets the count", f.gpus, f.devices,
               devices.size());
  return devices;
}

Session::Session(const SessionFlags& f, bool progress, int run_layers, const OffloadFlags* offload) {
  check_taming(f.taming);
  backend_name_ = resolve_backend(f.backend);
  const std::vector<int> devices = rank_devices(f);
  const int ranks = static_cast<int>(devices.size());
  MOSAIC_CHECK(ranks > 1 || !f.exchange_flag || f.exchange_flag->count() == 0,
               "--exchange {} picks how the ranks of --gpus N (N > 1) meet; one GPU has no one to exchange with",
               f.exchange);
  // The ranks' devices and communicators first: a missing GPU or NCCL fails before any weight loads.
  if (ranks > 1) ranks_ = parallel::RankGroup::make(backend_name_, devices);
  backend_ = make_backend(backend_name_, devices[0]);
  const size_t free_before = backend_->free_memory();
  total_budget_ = f.memory_budget.empty() ? free_before : parse_memory(f.memory_budget, free_before, "--memory-budget");

  std::string dir = resolve_model_dir(f.model);
  parallel::Exchange exchange = parallel::Exchange::AllGather;
  if (ranks > 1)  // before any weight loads
    exchange = exchange_for(f.exchange, load_model_config((std::filesystem::path(dir) / "config.json").string()), dir,
                            ranks, fmt::format("{} GPUs", ranks));
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
  // Ranks that share a device (CPU ranks share the host) share its budget: each its weights and
  // an equal part of the rest. Ranks on GPUs of their own each get rank 0's budget.
  size_t sharing = 1;
  for (int d : devices)
    sharing = std::max<size_t>(sharing, static_cast<size_t>(std::count(devices.begin(), devices.end(), d)));
  if (backend_name_ == "cpu") sharing = devices.size();
  const size_t used = backend_->weight_bytes() + backend_overhead(backend_name_);
  MOSAIC_CHECK(total_budget_ > sharing * used,
               "the memory budget {} does not even hold the weights ({}{}) and the {} backend's working memory; "
               "raise --memory-budget",
               human_bytes(static_cast<double>(total_budget_)), human_bytes(static_cast<double>(backend_->weight_bytes())),
               sharing > 1 ? fmt::format(", once per rank for {} ranks sharing a device", sharing) : "", backend_name_);
  model_->set_activation_budget((total_budget_ - sharing * used) / sharing);
  model_->set_taming(f.taming.min_rows, f.taming.target);
  if (ranks_) {
    MOSAIC_CHECK(!offload_, "--gpus {}: an expert offload runs on one GPU; drop --gpus or the offload flags", ranks);
    // Ranks 1.. load at once, each on its own thread (which its backend makes current on its device).
    if (progress) fmt::print(stderr, "mosaic: loading the weights on ranks 1..{} as well\n", ranks - 1);
    peer_backends_.resize(static_cast<size_t>(ranks - 1));
    peers_.resize(static_cast<size_t>(ranks - 1));
    std::vector<std::exception_ptr> errors(static_cast<size_t>(ranks - 1));
    std::vector<std::thread> loaders;
    for (int r = 1; r < ranks; ++r)
      loaders.emplace_back([&, r] {
        const size_t i = static_cast<size_t>(r - 1);
        try {
          peer_backends_[i] = make_backend(backend_name_, devices[static_cast<size_t>(r)]);
          peers_[i] = std::make_unique<Model>(dir, *peer_backends_[i], LoadProgress{}, run_layers);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      });
    for (std::thread& t : loaders) t.join();
    for (const std::exception_ptr& e : errors)
      if (e) std::rethrow_exception(e);
    std::vector<Model*> peers;
    for (auto& p : peers_) peers.push_back(p.get());
    backend_->make_current();
    model_->set_shards(peers, ranks_->comms(), exchange);
  }

  auto tok_path = std::filesystem::path(dir) / "tokenizer.json";
  if (std::filesystem::exists(tok_path))
    tokenizer_ = std::make_unique<io::Tokenizer>(io::Tokenizer::load(tok_path.string()));
  if (progress)
    fmt::print(stderr, "mosaic: {} ({}, {} layers, d={}) on {}, weights {}, activation budget {}\n", dir,
               model_->config().family, model_->config().n_layers, model_->config().d_model,
               backend_name_, human_bytes(static_cast<double>(backend_->weight_bytes())),
               human_bytes(static_cast<double>(model_->activation_budget())));
  if (progress && ranks_)
    fmt::print(stderr, "mosaic: every step's rows sharded across {}, each rank with all the weights and the "
               "activation budget above; attention exchange: {}\n", ranks_->describe(),
               parallel::exchange_name(model_->exchange()));
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
