#include "io/model_config.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/error.h"

namespace mosaic::io {

namespace {

using json = nlohmann::json;

// Reads an integer field that may be absent or null; `fallback` < 0 means required.
int64_t int_field(const json& j, const std::string& key, const std::string& src,
                  int64_t fallback = -1) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    MOSAIC_CHECK(fallback >= 0, "{}: required field '{}' is missing", src, key);
    return fallback;
  }
  MOSAIC_CHECK(it->is_number_integer(), "{}: field '{}' must be an integer, got {}", src, key,
               it->dump());
  return it->get<int64_t>();
}

double num_field(const json& j, const std::string& key, const std::string& src, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  MOSAIC_CHECK(it->is_number(), "{}: field '{}' must be a number, got {}", src, key, it->dump());
  return it->get<double>();
}

bool bool_field(const json& j, const std::string& key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) return fallback;
  return it->get<bool>();
}

std::optional<int64_t> opt_id(const json& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

void parse_llada(const json& j, const std::string& src, ModelConfig& c) {
  c.arch = Arch::Llada;
  c.d_model = int_field(j, "d_model", src);
  c.n_layers = int_field(j, "n_layers", src);
  c.n_heads = int_field(j, "n_heads", src);
  c.n_kv_heads = int_field(j, "n_kv_heads", src, c.n_heads);
  int64_t ratio = int_field(j, "mlp_ratio", src, 4);
  c.ffn_hidden = int_field(j, "mlp_hidden_size", src, ratio * c.d_model);
  c.vocab_size = int_field(j, "vocab_size", src);
  c.embedding_size = int_field(j, "embedding_size", src, c.vocab_size);
  c.rope_theta = num_field(j, "rope_theta", src, 10000.0);
  c.rms_eps = static_cast<float>(
      num_field(j, "rms_norm_eps", src, num_field(j, "layer_norm_eps", src, 1e-5)));
  c.mask_token_id = int_field(j, "mask_token_id", src);
  c.max_seq_len = int_field(j, "max_sequence_length", src, 0);
  c.weight_tying = bool_field(j, "weight_tying", false);
  c.qkv_bias = bool_field(j, "include_qkv_bias", false) || bool_field(j, "include_bias", false);

  // Variants of the OLMo-derived code that this engine does not implement: refuse them
  // rather than produce plausible garbage.
  if (j.contains("block_type") && j["block_type"].is_string()) {
    auto bt = j["block_type"].get<std::string>();
    MOSAIC_CHECK(bt == "llama", "{}: block_type '{}' is not supported (only 'llama', as in LLaDA-8B)",
                 src, bt);
  }
  if (j.contains("activation_type") && j["activation_type"].is_string()) {
    auto a = j["activation_type"].get<std::string>();
    MOSAIC_CHECK(a == "silu" || a == "swiglu",
                 "{}: activation_type '{}' is not supported (only silu/swiglu)", src, a);
  }
  MOSAIC_CHECK(bool_field(j, "rope", true), "{}: 'rope': false (ALiBi/absolute positions) is not supported",
               src);
  MOSAIC_CHECK(!bool_field(j, "attention_layer_norm", false),
               "{}: 'attention_layer_norm' (QK-norm) is not supported", src);
  MOSAIC_CHECK(!bool_field(j, "scale_logits", false), "{}: 'scale_logits' is not supported", src);
  c.bos_token_id = opt_id(j, "bos_token_id");
  c.eos_token_id = opt_id(j, "eos_token_id");
}

void parse_dream(const json& j, const std::string& src, ModelConfig& c) {
  c.arch = Arch::Dream;
  c.d_model = int_field(j, "hidden_size", src);
  c.n_layers = int_field(j, "num_hidden_layers", src);
  c.n_heads = int_field(j, "num_attention_heads", src);
  c.n_kv_heads = int_field(j, "num_key_value_heads", src, c.n_heads);
  c.ffn_hidden = int_field(j, "intermediate_size", src);
  c.vocab_size = int_field(j, "vocab_size", src);
  c.embedding_size = c.vocab_size;
  c.rope_theta = num_field(j, "rope_theta", src, 10000.0);
  c.rms_eps = static_cast<float>(num_field(j, "rms_norm_eps", src, 1e-6));
  c.mask_token_id = int_field(j, "mask_token_id", src);
  c.max_seq_len = int_field(j, "max_position_embeddings", src, 0);
  c.weight_tying = bool_field(j, "tie_word_embeddings", false);
  c.qkv_bias = true;  // Qwen2 attention always carries q/k/v biases
  c.bos_token_id = opt_id(j, "bos_token_id");
  c.eos_token_id = opt_id(j, "eos_token_id");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    MOSAIC_FAIL("{}: 'rope_scaling' is not supported yet; remove it or set it to null", src);
}

}  // namespace

std::string arch_name(Arch a) { return a == Arch::Llada ? "llada" : "dream"; }

int64_t ModelConfig::n_params() const {
  int64_t attn = d_model * (d_model + 2 * kv_dim()) + d_model * d_model;
  int64_t ffn = 3 * d_model * ffn_hidden;
  int64_t per_layer = attn + ffn + 2 * d_model + (qkv_bias ? d_model + 2 * kv_dim() : 0);
  int64_t emb = embedding_size * d_model;
  return n_layers * per_layer + emb * (weight_tying ? 1 : 2) + d_model;
}

ModelConfig parse_model_config(const json& j, const std::string& src) {
  MOSAIC_CHECK(j.is_object(), "{}: expected a JSON object", src);
  ModelConfig c;
  c.source = src;
  std::string mt = j.contains("model_type") && j["model_type"].is_string()
                       ? j["model_type"].get<std::string>()
                       : "";
  c.model_type = mt;
  std::string lower;
  for (char ch : mt) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (lower == "llada") {
    parse_llada(j, src, c);
  } else if (lower == "dream") {
    parse_dream(j, src, c);
  } else if (lower.empty()) {
    MOSAIC_FAIL("{}: field 'model_type' is missing; supported: llada, Dream", src);
  } else {
    MOSAIC_FAIL("{}: unknown model_type '{}'; supported: llada (LLaDA-8B), Dream (Dream-7B)", src,
                mt);
  }
  MOSAIC_CHECK(c.d_model > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0,
               "{}: sizes must be positive (d_model={}, n_layers={}, n_heads={}, n_kv_heads={})", src,
               c.d_model, c.n_layers, c.n_heads, c.n_kv_heads);
  MOSAIC_CHECK(c.d_model % c.n_heads == 0, "{}: d_model {} is not divisible by n_heads {}", src,
               c.d_model, c.n_heads);
  MOSAIC_CHECK(c.n_heads % c.n_kv_heads == 0, "{}: n_heads {} is not a multiple of n_kv_heads {}",
               src, c.n_heads, c.n_kv_heads);
  c.head_dim = c.d_model / c.n_heads;
  MOSAIC_CHECK(c.head_dim % 2 == 0, "{}: head dim {} must be even for rotary embeddings", src,
               c.head_dim);
  MOSAIC_CHECK(c.ffn_hidden > 0 && c.vocab_size > 0, "{}: ffn/vocab sizes must be positive", src);
  MOSAIC_CHECK(c.embedding_size >= c.vocab_size,
               "{}: embedding_size {} is smaller than vocab_size {}", src, c.embedding_size,
               c.vocab_size);
  MOSAIC_CHECK(c.mask_token_id >= 0 && c.mask_token_id < c.embedding_size,
               "{}: mask_token_id {} is outside the embedding (size {})", src, c.mask_token_id,
               c.embedding_size);
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  std::ifstream f(path);
  MOSAIC_CHECK(f.good(), "cannot open model config '{}': no such file (a model directory needs a "
               "config.json)", path);
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    MOSAIC_FAIL("{}: not valid JSON ({})", path, e.what());
  }
  return parse_model_config(j, path);
}

}  // namespace mosaic::io
