// LLaDA (GSAI-ML/LLaDA-8B-Base and -Instruct; the shipped mosaic-tiny): OLMo-style names,
// Llama blocks (pre-norm, rotary, SwiGLU), bidirectional attention, optional fused att_proj.
#include <fmt/format.h>

#include "core/error.h"
#include "io/chat_template.h"
#include "io/checkpoint.h"
#include "models/family.h"

namespace mosaic {

namespace {

std::string block(int l, const char* name) { return fmt::format("model.transformer.blocks.{}.{}", l, name); }

class Llada final : public ModelFamily {
 public:
  std::string name() const override { return "llada"; }
  std::vector<std::string> model_types() const override { return {"llada"}; }

  io::ModelConfig parse_config(const io::ConfigFields& f) const override {
    const std::string& src = f.source();
    io::ModelConfig c;
    c.d_model = f.integer("d_model");
    c.n_layers = f.integer("n_layers");
    c.n_heads = f.integer("n_heads");
    c.n_kv_heads = f.integer("n_kv_heads", c.n_heads);
    const int64_t ratio = f.integer("mlp_ratio", 4);
    c.ffn_hidden = f.integer("mlp_hidden_size", ratio * c.d_model);
    c.vocab_size = f.integer("vocab_size");
    c.embedding_size = f.integer("embedding_size", c.vocab_size);
    c.rope_theta = f.number("rope_theta", 10000.0);
    c.rms_eps = static_cast<float>(f.number("rms_norm_eps", f.number("layer_norm_eps", 1e-5)));
    c.mask_token_id = f.integer("mask_token_id");
    c.max_seq_len = f.integer("max_sequence_length", 0);
    c.weight_tying = f.boolean("weight_tying", false);
    c.qkv_bias = f.boolean("include_qkv_bias", false) || f.boolean("include_bias", false);
    // Variants of the OLMo-derived code that this engine does not implement: refuse them
    // rather than produce plausible garbage.
    if (auto bt = f.string("block_type"))
      MOSAIC_CHECK(*bt == "llama", "{}: block_type '{}' is not supported (only 'llama', as in LLaDA-8B)", src, *bt);
    if (auto a = f.string("activation_type"))
      MOSAIC_CHECK(*a == "silu" || *a == "swiglu", "{}: activation_type '{}' is not supported (only silu/swiglu)",
                   src, *a);
    MOSAIC_CHECK(f.boolean("rope", true), "{}: 'rope': false (ALiBi/absolute positions) is not supported", src);
    MOSAIC_CHECK(!f.boolean("attention_layer_norm", false), "{}: 'attention_layer_norm' (QK-norm) is not supported",
                 src);
    MOSAIC_CHECK(!f.boolean("scale_logits", false), "{}: 'scale_logits' is not supported", src);
    c.bos_token_id = f.optional_id("bos_token_id");
    c.eos_token_id = f.optional_id("eos_token_id");
    return c;
  }

  bool fused_qkv(const io::ModelConfig&, const io::Checkpoint& ck) const override {
    return ck.find(block(0, "att_proj.weight")) != nullptr && ck.find(block(0, "q_proj.weight")) == nullptr;
  }

  Graph build_step_graph(const io::ModelConfig& c, const GraphOptions& o) const override {
    ModelWeights w{"model.transformer.wte.weight", "model.transformer.ln_f.weight",
                   c.weight_tying ? "model.transformer.wte.weight" : "model.transformer.ff_out.weight"};
    return StepGraphBuilder(c, o).build(w, [&c](StepGraphBuilder& b, int l) {
      AttentionWeights a{block(l, "attn_norm.weight"), block(l, "q_proj.weight"), block(l, "k_proj.weight"),
                         block(l, "v_proj.weight"),    block(l, "att_proj.weight"), block(l, "attn_out.weight")};
      if (c.qkv_bias) {
        a.q_bias = block(l, "q_proj.bias");
        a.k_bias = block(l, "k_proj.bias");
        a.v_bias = block(l, "v_proj.bias");
      }
      b.attention(l, a);
      // ff_proj is the gated (SiLU) branch, up_proj the linear one.
      b.dense_ffn(l, {block(l, "ff_norm.weight"), block(l, "ff_proj.weight"), block(l, "up_proj.weight"),
                      block(l, "ff_out.weight")});
    });
  }

  std::string chat_prompt(const ChatMessages& m, bool add_generation_prompt) const override {
    return io::apply_chat_template("llada", m, add_generation_prompt);
  }
  SamplerKind default_sampler() const override { return SamplerKind::Llada; }
};

}  // namespace

const ModelFamily& llada_family() {
  static const Llada family;
  return family;
}

}  // namespace mosaic
