#include "models/weight_names.h"

#include <fmt/format.h>

namespace mosaic {

namespace {

const char* llada_role(WeightRole r) {
  switch (r) {
    case WeightRole::AttnNorm: return "attn_norm";
    case WeightRole::Q: return "q_proj";
    case WeightRole::K: return "k_proj";
    case WeightRole::V: return "v_proj";
    case WeightRole::FusedQKV: return "att_proj";
    case WeightRole::AttnOut: return "attn_out";
    case WeightRole::FfnNorm: return "ff_norm";
    case WeightRole::Gate: return "ff_proj";  // the gated (SiLU) branch
    case WeightRole::Up: return "up_proj";    // the linear branch
    case WeightRole::Down: return "ff_out";
  }
  return "?";
}

const char* dream_role(WeightRole r) {
  switch (r) {
    case WeightRole::AttnNorm: return "input_layernorm";
    case WeightRole::Q: return "self_attn.q_proj";
    case WeightRole::K: return "self_attn.k_proj";
    case WeightRole::V: return "self_attn.v_proj";
    case WeightRole::FusedQKV: return "self_attn.qkv_proj";
    case WeightRole::AttnOut: return "self_attn.o_proj";
    case WeightRole::FfnNorm: return "post_attention_layernorm";
    case WeightRole::Gate: return "mlp.gate_proj";
    case WeightRole::Up: return "mlp.up_proj";
    case WeightRole::Down: return "mlp.down_proj";
  }
  return "?";
}

}  // namespace

std::string WeightNames::embed() const {
  return arch == io::Arch::Llada ? "model.transformer.wte.weight" : "model.embed_tokens.weight";
}
std::string WeightNames::final_norm() const {
  return arch == io::Arch::Llada ? "model.transformer.ln_f.weight" : "model.norm.weight";
}
std::string WeightNames::lm_head(bool tied) const {
  if (tied) return embed();
  return arch == io::Arch::Llada ? "model.transformer.ff_out.weight" : "lm_head.weight";
}
std::string WeightNames::layer(int l, WeightRole r) const {
  if (arch == io::Arch::Llada) return fmt::format("model.transformer.blocks.{}.{}.weight", l, llada_role(r));
  return fmt::format("model.layers.{}.{}.weight", l, dream_role(r));
}
std::string WeightNames::bias(int l, WeightRole r) const {
  if (arch == io::Arch::Llada) return fmt::format("model.transformer.blocks.{}.{}.bias", l, llada_role(r));
  return fmt::format("model.layers.{}.{}.bias", l, dream_role(r));
}

}  // namespace mosaic
