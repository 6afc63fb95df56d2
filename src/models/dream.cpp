// Dream (Dream-org/Dream-v0-Base-7B and -Instruct-7B): Qwen2.5 run bidirectionally. Qwen2
// names, GQA, q/k/v biases; its logits are read one row early (row i predicts token i + 1,
// as its sampler shifts them), ChatML prompts, its own sampler (decode/dream_sampler).
#include <fmt/format.h>

#include "core/error.h"
#include "io/chat_template.h"
#include "io/checkpoint.h"
#include "models/family.h"

namespace mosaic {

namespace {

std::string layer(int l, const char* name) { return fmt::format("model.layers.{}.{}", l, name); }

class Dream final : public ModelFamily {
 public:
  std::string name() const override { return "dream"; }
  std::vector<std::string> model_types() const override { return {"dream"}; }

  io::ModelConfig parse_config(const io::ConfigFields& f) const override {
    io::ModelConfig c;
    c.d_model = f.integer("hidden_size");
    c.n_layers = f.integer("num_hidden_layers");
    c.n_heads = f.integer("num_attention_heads");
    c.n_kv_heads = f.integer("num_key_value_heads", c.n_heads);
    c.ffn_hidden = f.integer("intermediate_size");
    c.vocab_size = f.integer("vocab_size");
    c.embedding_size = c.vocab_size;
    c.rope_theta = f.number("rope_theta", 10000.0);
    c.rms_eps = static_cast<float>(f.number("rms_norm_eps", 1e-6));
    c.mask_token_id = f.integer("mask_token_id");
    c.max_seq_len = f.integer("max_position_embeddings", 0);
    c.weight_tying = f.boolean("tie_word_embeddings", false);
    c.qkv_bias = true;  // Qwen2 attention always carries q/k/v biases
    c.bos_token_id = f.optional_id("bos_token_id");
    c.eos_token_id = f.optional_id("eos_token_id");
    MOSAIC_CHECK(!f.has("rope_scaling"), "{}: 'rope_scaling' is not supported yet; remove it or set it to null",
                 f.source());
    if (auto act = f.string("hidden_act"))
      MOSAIC_CHECK(*act == "silu", "{}: hidden_act '{}' is not supported (only silu)", f.source(), *act);
    return c;
  }

  bool fused_qkv(const io::ModelConfig&, const io::Checkpoint& ck) const override {
    return ck.find(layer(0, "self_attn.qkv_proj.weight")) != nullptr &&
           ck.find(layer(0, "self_attn.q_proj.weight")) == nullptr;
  }

  Graph build_step_graph(const io::ModelConfig& c, const GraphOptions& o) const override {
    ModelWeights w{"model.embed_tokens.weight", "model.norm.weight",
                   c.weight_tying ? "model.embed_tokens.weight" : "lm_head.weight"};
    return StepGraphBuilder(c, o).build(w, [](StepGraphBuilder& b, int l) {
      b.attention(l, {layer(l, "input_layernorm.weight"), layer(l, "self_attn.q_proj.weight"),
                      layer(l, "self_attn.k_proj.weight"), layer(l, "self_attn.v_proj.weight"),
                      layer(l, "self_attn.qkv_proj.weight"), layer(l, "self_attn.o_proj.weight"),
                      layer(l, "self_attn.q_proj.bias"), layer(l, "self_attn.k_proj.bias"),
                      layer(l, "self_attn.v_proj.bias")});
      b.dense_ffn(l, {layer(l, "post_attention_layernorm.weight"), layer(l, "mlp.gate_proj.weight"),
                      layer(l, "mlp.up_proj.weight"), layer(l, "mlp.down_proj.weight")});
    });
  }

  // Dream's sampler shifts the logits right by one: position p is predicted by row p - 1
  // (position 0 by row 0, as the official cat([logits[:, :1], logits[:, :-1]]) does).
  int64_t head_row(int64_t pos) const override { return pos > 0 ? pos - 1 : 0; }

  std::string chat_prompt(const ChatMessages& m, bool add_generation_prompt) const override {
    return io::apply_chat_template("dream", m, add_generation_prompt);
  }
  SamplerKind default_sampler() const override { return SamplerKind::Dream; }
};

}  // namespace

const ModelFamily& dream_family() {
  static const Dream family;
  return family;
}

}  // namespace mosaic
