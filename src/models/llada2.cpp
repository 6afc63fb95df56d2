// LLaDA2.0 (inclusionAI LLaDA2.0-mini / -flash, `llada2_moe`): Ling-2.0's MoE transformer run as
// a block-diffusion model. Fused query_key_value, RMSNorm on each q and k head, rotary embedding
// on the first partial_rotary_factor of each head, the first first_k_dense_replace layers dense
// and the rest mixtures of experts (sigmoid router with expert_bias and group-limited top-k, a
// shared expert), block-causal attention, its own generate() (decode/llada2_sampler).
// docs/notes/moe_models.md has every fact with its source.
#include <fmt/format.h>

#include "core/error.h"
#include "io/chat_template.h"
#include "io/checkpoint.h"
#include "models/family.h"

namespace mosaic {

namespace {

std::string layer(int l, const char* name) { return fmt::format("model.layers.{}.{}", l, name); }

class Llada2 final : public ModelFamily {
 public:
  std::string name() const override { return "llada2"; }
  std::vector<std::string> model_types() const override { return {"llada2_moe"}; }

  // Fields the file leaves out take LLaDA2MoeConfig's defaults; the ids generate()'s.
  io::ModelConfig parse_config(const io::ConfigFields& f) const override {
    const std::string& src = f.source();
    io::ModelConfig c;
    c.d_model = f.integer("hidden_size");
    c.n_layers = f.integer("num_hidden_layers");
    c.n_heads = f.integer("num_attention_heads");
    c.n_kv_heads = f.integer("num_key_value_heads", c.n_heads);
    c.head_dim = f.integer("head_dim", 0);
    c.ffn_hidden = f.integer("intermediate_size");
    c.vocab_size = f.integer("vocab_size");
    c.embedding_size = c.vocab_size;
    c.rope_theta = f.number("rope_theta", 10000.0);
    c.rms_eps = static_cast<float>(f.number("rms_norm_eps", 1e-5));
    c.mask_token_id = f.integer("mask_token_id", 156895);
    c.eos_token_id = f.integer("eos_token_id", 156892);
    c.max_seq_len = f.integer("max_position_embeddings", 0);
    c.weight_tying = f.boolean("tie_word_embeddings", false);
    c.qk_norm = f.boolean("use_qk_norm", true);
    const int64_t hd = c.head_dim > 0 ? c.head_dim : c.d_model / std::max<int64_t>(c.n_heads, 1);
    const double partial = f.number("partial_rotary_factor", 0.5);
    MOSAIC_CHECK(partial > 0.0 && partial <= 1.0, "{}: partial_rotary_factor {} must be in (0, 1]", src, partial);
    c.rotary_dim = static_cast<int64_t>(static_cast<double>(hd) * partial);
    MOSAIC_CHECK(!f.boolean("use_qkv_bias", false) && !f.boolean("use_bias", true),
                 "{}: use_bias / use_qkv_bias are not supported (LLaDA2.0's checkpoints have no biases; the config "
                 "class defaults use_bias to true, so write \"use_bias\": false)", src);
    MOSAIC_CHECK(!f.has("rope_scaling"), "{}: 'rope_scaling' is not supported yet; remove it or set it to null", src);
    MOSAIC_CHECK(!f.boolean("use_sliding_window", false), "{}: use_sliding_window is not supported", src);
    if (auto act = f.string("hidden_act"))
      MOSAIC_CHECK(*act == "silu", "{}: hidden_act '{}' is not supported (only silu)", src, *act);

    io::MoeConfig& m = c.moe;
    m.experts = f.integer("num_experts");
    m.experts_per_token = f.integer("num_experts_per_tok");
    m.ffn_hidden = f.integer("moe_intermediate_size");
    m.shared_ffn_hidden = f.integer("num_shared_experts", 0) * m.ffn_hidden;
    m.first_dense_layers = f.integer("first_k_dense_replace", 0);
    m.groups = f.integer("n_group", 1);
    m.top_groups = f.integer("topk_group", m.groups);
    m.routed_scale = f.number("routed_scaling_factor", 1.0);
    m.expert_bias = f.boolean("moe_router_enable_expert_bias", true);
    m.sigmoid_groups = true;
    m.renormalize = true;  // LLaDA2MoeGate normalises whenever top_k > 1; norm_topk_prob is never read
    const std::string score = f.string("score_function").value_or("sigmoid");
    MOSAIC_CHECK(score == "sigmoid", "{}: score_function '{}' is not supported (LLaDA2.0's router is sigmoid)", src,
                 score);
    MOSAIC_CHECK(m.experts > 0, "{}: num_experts must be positive (got {})", src, m.experts);
    return c;
  }

  bool fused_qkv(const io::ModelConfig&, const io::Checkpoint&) const override { return true; }

  Graph build_step_graph(const io::ModelConfig& c, const GraphOptions& o) const override {
    ModelWeights w{"model.word_embeddings.weight", "model.norm.weight",
                   c.weight_tying ? "model.word_embeddings.weight" : "lm_head.weight"};
    return StepGraphBuilder(c, o).build(w, [&c](StepGraphBuilder& b, int l) {
      AttentionWeights a;
      a.norm = layer(l, "input_layernorm.weight");
      a.fused_qkv = layer(l, "attention.query_key_value.weight");
      a.out = layer(l, "attention.dense.weight");
      if (c.qk_norm) {
        a.q_norm = layer(l, "attention.query_layernorm.weight");
        a.k_norm = layer(l, "attention.key_layernorm.weight");
      }
      b.attention(l, a);
      if (!c.is_moe_layer(l)) {
        b.dense_ffn(l, {layer(l, "post_attention_layernorm.weight"), layer(l, "mlp.gate_proj.weight"),
                        layer(l, "mlp.up_proj.weight"), layer(l, "mlp.down_proj.weight")});
        return;
      }
      MoeFfnWeights m;
      m.norm = layer(l, "post_attention_layernorm.weight");
      m.router = layer(l, "mlp.gate.weight");
      if (c.moe.expert_bias) m.router_bias = layer(l, "mlp.gate.expert_bias");
      m.name_experts(layer(l, "mlp.experts."), c.moe.experts);
      if (c.moe.shared_ffn_hidden > 0) {
        m.shared_gate = layer(l, "mlp.shared_experts.gate_proj.weight");
        m.shared_up = layer(l, "mlp.shared_experts.up_proj.weight");
        m.shared_down = layer(l, "mlp.shared_experts.down_proj.weight");
      }
      b.moe_ffn(l, m);
    });
  }

  std::string chat_prompt(const ChatMessages& m, bool add_generation_prompt) const override {
    return io::apply_chat_template("llada2", m, add_generation_prompt);
  }
  SamplerKind default_sampler() const override { return SamplerKind::Llada2; }
};

}  // namespace

const ModelFamily& llada2_family() {
  static const Llada2 family;
  return family;
}

}  // namespace mosaic
