#pragma once
// config.json -> the sizes and ids a model graph needs, for every architecture mosaic runs.
// Nothing here assumes LLaDA-8B's numbers: every size and token id comes from the file.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace mosaic::io {

enum class Arch { Llada, Dream };

struct ModelConfig {
  Arch arch = Arch::Llada;
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
  std::optional<int64_t> bos_token_id, eos_token_id;
  std::string source;  // file it came from, for messages

  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  // Parameters of the transformer (weights that must be resident).
  int64_t n_params() const;
};

ModelConfig load_model_config(const std::string& path);
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
std::string arch_name(Arch a);

}  // namespace mosaic::io
