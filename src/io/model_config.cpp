#include "io/model_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/error.h"

namespace mosaic::io {

using json = nlohmann::json;

int64_t ConfigFields::integer(const std::string& key) const {
  auto it = j_.find(key);
  MOSAIC_CHECK(it != j_.end() && !it->is_null(), "{}: required field '{}' is missing", src_, key);
  MOSAIC_CHECK(it->is_number_integer(), "{}: field '{}' must be an integer, got {}", src_, key, it->dump());
  return it->get<int64_t>();
}

int64_t ConfigFields::integer(const std::string& key, int64_t fallback) const {
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return fallback;
  return integer(key);
}

double ConfigFields::number(const std::string& key, double fallback) const {
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return fallback;
  MOSAIC_CHECK(it->is_number(), "{}: field '{}' must be a number, got {}", src_, key, it->dump());
  return it->get<double>();
}

bool ConfigFields::boolean(const std::string& key, bool fallback) const {
  auto it = j_.find(key);
  if (it == j_.end() || !it->is_boolean()) return fallback;
  return it->get<bool>();
}

std::optional<int64_t> ConfigFields::optional_id(const std::string& key) const {
  auto it = j_.find(key);
  if (it == j_.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

std::optional<std::string> ConfigFields::string(const std::string& key) const {
  auto it = j_.find(key);
  if (it == j_.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

const json* ConfigFields::find(const std::string& key) const {
  auto it = j_.find(key);
  return it == j_.end() ? nullptr : &*it;
}

bool ConfigFields::has(const std::string& key) const {
  auto it = j_.find(key);
  return it != j_.end() && !it->is_null();
}

namespace {

// The resident parameters, counted in T: int64_t for the figure, double for the check that it
// is sane (before it is counted in int64_t).
template <class T>
T count_params(const ModelConfig& c) {
  const T d = static_cast<T>(c.d_model);
  const T hd = static_cast<T>(c.head_dim > 0 ? c.head_dim : c.d_model / c.n_heads);
  const T qd = static_cast<T>(c.n_heads) * hd, kvd = static_cast<T>(c.n_kv_heads) * hd;
  const T attn = d * (qd + 2 * kvd) + qd * d + (c.qkv_bias ? qd + 2 * kvd : T(0)) + (c.qk_norm ? 2 * hd : T(0));
  const T dense = 3 * d * static_cast<T>(c.ffn_hidden);
  const T experts = static_cast<T>(c.moe.experts);
  const T moe_ffn = experts * (d + 3 * d * static_cast<T>(c.moe.ffn_hidden)) +
                    3 * d * static_cast<T>(c.moe.shared_ffn_hidden) + (c.moe.expert_bias ? experts : T(0));
  T layers = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) layers += attn + 2 * d + (c.is_moe_layer(l) ? moe_ffn : dense);
  const T emb = static_cast<T>(c.embedding_size) * d;
  return layers + emb * (c.weight_tying ? 1 : 2) + d;
}

}  // namespace

std::vector<int> ModelConfig::moe_layers(int64_t n) const {
  std::vector<int> v;
  for (int64_t l = 0; l < (n > 0 ? std::min(n, n_layers) : n_layers); ++l)
    if (is_moe_layer(l)) v.push_back(static_cast<int>(l));
  return v;
}

int64_t ModelConfig::n_params() const { return count_params<int64_t>(*this); }

void check_model_config(ModelConfig& c) {
  const std::string& src = c.source;
  // Sizes past these are not models but corrupt or hostile files: refused before anything
  // multiplies them.
  auto at_most = [&](int64_t v, int64_t limit, const char* what) {
    MOSAIC_CHECK(v <= limit, "{}: {} {} is past what mosaic supports ({})", src, what, v, limit);
  };
  at_most(c.d_model, int64_t{1} << 20, "the hidden size");
  at_most(c.n_layers, int64_t{1} << 16, "the layer count");
  at_most(c.n_heads, int64_t{1} << 16, "the head count");
  at_most(c.n_kv_heads, int64_t{1} << 16, "the key/value head count");
  at_most(c.head_dim, int64_t{1} << 16, "the head dim");
  at_most(c.ffn_hidden, int64_t{1} << 22, "the FFN size");
  at_most(c.vocab_size, int64_t{1} << 26, "the vocabulary size");
  at_most(c.embedding_size, int64_t{1} << 26, "the embedding size");
  at_most(c.moe.experts, int64_t{1} << 16, "num_experts");
  at_most(c.moe.ffn_hidden, int64_t{1} << 22, "the experts' FFN size");
  at_most(c.moe.shared_ffn_hidden, int64_t{1} << 22, "the shared expert's FFN size");
  MOSAIC_CHECK(c.d_model > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0,
               "{}: sizes must be positive (d_model={}, n_layers={}, n_heads={}, n_kv_heads={})", src, c.d_model,
               c.n_layers, c.n_heads, c.n_kv_heads);
  MOSAIC_CHECK(c.head_dim > 0 || c.d_model % c.n_heads == 0,
               "{}: d_model {} is not divisible by n_heads {} (and no head_dim is given)", src, c.d_model, c.n_heads);
  MOSAIC_CHECK(c.n_heads % c.n_kv_heads == 0, "{}: n_heads {} is not a multiple of n_kv_heads {}", src, c.n_heads,
               c.n_kv_heads);
  if (c.head_dim == 0) c.head_dim = c.d_model / c.n_heads;
  MOSAIC_CHECK(c.head_dim % 2 == 0, "{}: head dim {} must be even for rotary embeddings", src, c.head_dim);
  MOSAIC_CHECK(c.ffn_hidden > 0 && c.vocab_size > 0, "{}: ffn/vocab sizes must be positive", src);
  MOSAIC_CHECK(c.embedding_size >= c.vocab_size, "{}: embedding_size {} is smaller than vocab_size {}", src,
               c.embedding_size, c.vocab_size);
  MOSAIC_CHECK(c.rotary_dim >= 0 && c.rotary_dim <= c.head_dim && c.rotary_dim % 2 == 0,
               "{}: rotary dims {} must be even and at most the head dim {}", src, c.rotary_dim, c.head_dim);
  MOSAIC_CHECK(c.moe.experts >= 0 && c.moe.shared_ffn_hidden >= 0,
               "{}: num_experts ({}) and the shared experts' size ({}) must not be negative", src, c.moe.experts,
               c.moe.shared_ffn_hidden);
  if (c.moe.experts > 0) {
    const MoeConfig& m = c.moe;
    MOSAIC_CHECK(m.experts_per_token >= 1 && m.experts_per_token <= m.experts,
                 "{}: num_experts_per_tok {} must be in [1, num_experts {}]", src, m.experts_per_token, m.experts);
    MOSAIC_CHECK(m.ffn_hidden > 0, "{}: the experts' hidden size must be positive (got {})", src, m.ffn_hidden);
    MOSAIC_CHECK(m.groups >= 1 && m.experts % m.groups == 0, "{}: n_group {} does not divide num_experts {}", src,
                 m.groups, m.experts);
    MOSAIC_CHECK(m.top_groups >= 1 && m.top_groups <= m.groups, "{}: topk_group {} must be in [1, n_group {}]", src,
                 m.top_groups, m.groups);
    MOSAIC_CHECK(!m.sigmoid_groups || m.groups == 1 || m.experts / m.groups >= 2,
                 "{}: a group scores its two best experts: n_group {} leaves fewer per group", src, m.groups);
    MOSAIC_CHECK(m.experts_per_token <= m.top_groups * (m.experts / m.groups),
                 "{}: num_experts_per_tok {} exceeds the {} experts of topk_group {} groups", src,
                 m.experts_per_token, m.top_groups * (m.experts / m.groups), m.top_groups);
    MOSAIC_CHECK(m.layers.empty() || static_cast<int64_t>(m.layers.size()) == c.n_layers,
                 "{}: moe_layer_freq lists {} layers, the model has {}", src, m.layers.size(), c.n_layers);
    MOSAIC_CHECK(m.first_dense_layers >= 0 && m.first_dense_layers <= c.n_layers,
                 "{}: first_k_dense_replace {} is outside [0, {} layers]", src, m.first_dense_layers, c.n_layers);
  }
  const double params = count_params<double>(c);
  MOSAIC_CHECK(params <= 1e15, "{}: these sizes make {:.3g} parameters, past what mosaic supports (1e15)", src,
               params);
  MOSAIC_CHECK(c.mask_token_id >= 0 && c.mask_token_id < c.embedding_size,
               "{}: mask_token_id {} is outside the embedding (size {})", src, c.mask_token_id, c.embedding_size);
}

}  // namespace mosaic::io
