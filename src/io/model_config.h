#pragma once
// config.json -> the sizes and ids a model graph needs. Which fields a file has depends on
// its family (models/<family>.cpp reads them with ConfigFields); the checks every family
// shares are here. Nothing assumes LLaDA-8B's numbers: every size and token id comes from
// the file.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/json_file.h"  // read_json_file

namespace mosaic::io {

// A mixture-of-experts FFN (experts == 0: every layer's FFN is dense).
struct MoeConfig {
  int64_t experts = 0;
  int64_t experts_per_token = 0;
  int64_t ffn_hidden = 0;         // each routed expert's hidden size
  int64_t shared_ffn_hidden = 0;  // the shared experts' (one SwiGLU of this size; 0: none)
  int64_t first_dense_layers = 0; // layers before this use the dense FFN (ffn_hidden of the model)
  std::vector<bool> layers;       // when given: which layers are MoE (the rest dense), instead
  int64_t groups = 1, top_groups = 1;
  double routed_scale = 1.0;
  bool sigmoid_groups = true;  // LLaDA2.0's router; false: softmax top-k (OLMoE)
  bool renormalize = true;
  bool expert_bias = false;    // the router has an expert_bias vector
};

struct ModelConfig {
  std::string family;      // the models/ family that parsed it: "llada", "dream", ...
  std::string model_type;  // as written in the file
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn_hidden = 0;
  int64_t vocab_size = 0;      // tokenizer's vocabulary
  int64_t embedding_size = 0;  // rows of the embedding / LM head (may be padded past vocab_size)
  double rope_theta = 10000.0;
  float rms_eps = 1e-5f;
  int64_t mask_token_id = -1;
  int64_t max_seq_len = 0;  // what the model was trained for; 0 = unknown
  bool qkv_bias = false;
  bool weight_tying = false;
  bool qk_norm = false;     // RMSNorm of each q and k head before rope
  int64_t rotary_dim = 0;   // rotated dims of each head (0: all of head_dim)
  MoeConfig moe;
  std::optional<int64_t> bos_token_id, eos_token_id;
  std::string source;  // file it came from, for messages
  // The whole file, for the fields only one family reads.
  std::shared_ptr<const nlohmann::json> raw;

  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  int64_t q_dim() const { return n_heads * head_dim; }  // may differ from d_model
  bool is_moe_layer(int64_t layer) const {
    if (moe.experts == 0) return false;
    if (!moe.layers.empty()) return layer < static_cast<int64_t>(moe.layers.size()) && moe.layers[layer];
    return layer >= moe.first_dense_layers;
  }
  // Indices of the MoE layers among the first `n` (all layers when n <= 0).
  std::vector<int> moe_layers(int64_t n = 0) const;
  // Parameters of the transformer (weights that must be resident).
  int64_t n_params() const;
};

// Typed reads of config.json fields with messages that name the file and the field.
class ConfigFields {
 public:
  ConfigFields(const nlohmann::json& j, std::string source) : j_(j), src_(std::move(source)) {}
  int64_t integer(const std::string& key) const;                    // required
  int64_t integer(const std::string& key, int64_t fallback) const;  // absent or null: fallback
  double number(const std::string& key, double fallback) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::optional<int64_t> optional_id(const std::string& key) const;
  std::optional<std::string> string(const std::string& key) const;
  bool has(const std::string& key) const;
  const nlohmann::json* find(const std::string& key) const;  // the raw field, nullptr when absent
  const std::string& source() const { return src_; }

 private:
  const nlohmann::json& j_;
  std::string src_;
};

// The checks every family shares (positive sizes, divisibility, ids inside the embedding);
// fills head_dim when the family left it 0.
void check_model_config(ModelConfig& c);

}  // namespace mosaic::io
