// LLaDA-MoE (inclusionAI LLaDA-MoE-7B-A1B-Base / -Instruct): OLMoE-style MoE layers under LLaDA's
// bidirectional attention and LLaDA's generate(). Separate q/k/v/o projections, RMSNorm on each q
// and k head, a softmax router whose top-k probabilities are the weights as they are (the
// official modeling hard-codes norm_topk_prob off), optional shared expert and expert bias, the
// MoE layers listed by moe_layer_freq. Its config.json says model_type "llada" (as LLaDA-8B's
// does): the family is picked by architectures (LLaDAMoEModelLM). docs/notes/moe_models.md has
// every fact with its source.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/chat_template.h"
#include "io/checkpoint.h"
#include "models/family.h"

namespace mosaic {

namespace {

std::string layer(int l, const char* name) { return fmt::format("model.layers.{}.{}", l, name); }

class LladaMoe final : public ModelFamily {
 public:
  std::string name() const override { return "llada_moe"; }
  std::vector<std::string> model_types() const override { return {"lladamoe"}; }
  std::vector<std::string> architectures() const override { return {"LLaDAMoEModelLM", "LLaDAMoEModel"}; }

  io::ModelConfig parse_config(const io::ConfigFields& f) const override {
    const std::string& src = f.source();
    io::ModelConfig c;
    c.d_model = f.integer("hidden_size");
    c.n_layers = f.integer("num_hidden_layers");
    c.n_heads = f.integer("num_attention_heads");
    c.n_kv_heads = f.integer("num_key_value_heads", c.n_heads);
    c.ffn_hidden = f.integer("dense_intermediate_size");
    c.vocab_size = f.integer("vocab_size");
    c.embedding_size = c.vocab_size;
    c.rope_theta = f.number("rope_theta", 10000.0);
    c.rms_eps = static_cast<float>(f.number("rms_norm_eps", 1e-5));
    c.mask_token_id = f.integer("mask_token_id", 156895);
    c.eos_token_id = f.optional_id("eos_token_id");
    c.max_seq_len = f.integer("max_position_embeddings", 0);
    c.weight_tying = f.boolean("tie_word_embeddings", false);
    c.qk_norm = f.boolean("qk_layernorm", true);
    const double partial = f.number("partial_rotary_factor", 1.0);
    MOSAIC_CHECK(partial > 0.0 && partial <= 1.0, "{}: partial_rotary_factor {} must be in (0, 1]", src, partial);
    c.rotary_dim = static_cast<int64_t>(static_cast<double>(c.d_model / std::max<int64_t>(c.n_heads, 1)) * partial);
    MOSAIC_CHECK(!f.boolean("attention_bias", false), "{}: attention_bias is not supported", src);
    MOSAIC_CHECK(!f.has("clip_qkv"), "{}: clip_qkv is not supported; remove it or set it to null", src);
    MOSAIC_CHECK(!f.has("rope_scaling"), "{}: 'rope_scaling' is not supported yet; remove it or set it to null", src);
    if (auto act = f.string("hidden_act"))
      MOSAIC_CHECK(*act == "silu", "{}: hidden_act '{}' is not supported (only silu)", src, *act);

    io::MoeConfig& m = c.moe;
    m.experts = f.integer("num_experts");
    MOSAIC_CHECK(m.experts > 0, "{}: num_experts must be positive (got {})", src, m.experts);
    m.experts_per_token = f.integer("num_experts_per_tok");
    m.ffn_hidden = f.integer("expert_intermediate_size");
    m.shared_ffn_hidden = f.integer("shared_expert_intermediate_size", 0);
    m.expert_bias = f.boolean("moe_router_enable_expert_bias", false);
    m.sigmoid_groups = false;  // softmax over the experts; score function, groups and scale are not read
    m.renormalize = false;     // hard-coded off in the official modeling, whatever norm_topk_prob says
    m.routed_scale = 1.0;
    if (f.has("moe_layer_freq")) {
      const auto& list = *f.find("moe_layer_freq");
      MOSAIC_CHECK(list.is_array(), "{}: moe_layer_freq must be a list of 0 (dense) / 1 (MoE) per layer", src);
      for (const auto& v : list) {
        MOSAIC_CHECK(v.is_number_integer() && (v == 0 || v == 1),
                     "{}: moe_layer_freq must list 0 (dense) or 1 (MoE) per layer, got {}", src, v.dump());
        m.layers.push_back(v == 1);
      }
    }
    return c;
  }

  bool fused_qkv(const io::ModelConfig&, const io::Checkpoint&) const override { return false; }

  Graph build_step_graph(const io::ModelConfig& c, const GraphOptions& o) const override {
    ModelWeights w{"model.embed_tokens.weight", "model.norm.weight",
                   c.weight_tying ? "model.embed_tokens.weight" : "lm_head.weight"};
    return StepGraphBuilder(c, o).build(w, [&c](StepGraphBuilder& b, int l) {
      AttentionWeights a;
      a.norm = layer(l, "input_layernorm.weight");
      a.q = layer(l, "self_attn.q_proj.weight");
      a.k = layer(l, "self_attn.k_proj.weight");
      a.v = layer(l, "self_attn.v_proj.weight");
      a.out = layer(l, "self_attn.o_proj.weight");
      if (c.qk_norm) {
        a.q_norm = layer(l, "self_attn.q_norm.weight");
        a.k_norm = layer(l, "self_attn.k_norm.weight");
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
      if (c.moe.expert_bias) m.router_bias = layer(l, "mlp.expert_bias");
      m.name_experts(layer(l, "mlp.experts."), c.moe.experts);
      if (c.moe.shared_ffn_hidden > 0) {
        m.shared_gate = layer(l, "shared_expert.gate_proj.weight");
        m.shared_up = layer(l, "shared_expert.up_proj.weight");
        m.shared_down = layer(l, "shared_expert.down_proj.weight");
      }
      b.moe_ffn(l, m);
    });
  }

  // The Ling chat format of inclusionAI's models (as dInfer writes LLaDA-MoE's prompts).
  std::string chat_prompt(const ChatMessages& m, bool add_generation_prompt) const override {
    return io::apply_chat_template("llada2", m, add_generation_prompt);
  }
  SamplerKind default_sampler() const override { return SamplerKind::Llada; }
};

}  // namespace

const ModelFamily& llada_moe_family() {
  static const LladaMoe family;
  return family;
}

}  // namespace mosaic
