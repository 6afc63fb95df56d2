// The model-family registry: config.json's model_type picks a family, which parses its own
// fields, names its weights and builds graphs that differ only where the families differ.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/family.h"

namespace mosaic {
namespace {

using nlohmann::json;

std::string error_of(const json& j) {
  try {
    parse_model_config(j, "test.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelFamilies, UnknownTypesGetTheListOfKnownOnes) {
  std::string e = error_of(json{{"model_type", "gpt2"}});
  EXPECT_NE(e.find("unknown model_type 'gpt2'"), std::string::npos) << e;
  for (const ModelFamily* f : model_families())
    for (const std::string& t : f->model_types()) EXPECT_NE(e.find(t), std::string::npos) << t;
  e = error_of(json{{"hidden_size", 8}});
  EXPECT_NE(e.find("'model_type' is missing"), std::string::npos) << e;
}

json dream_config() {
  return json{{"model_type", "Dream"}, {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
              {"num_key_value_heads", 2}, {"intermediate_size", 160}, {"vocab_size", 512}, {"mask_token_id", 500}};
}

TEST(ModelFamilies, EachFamilyParsesItsOwnFields) {
  io::ModelConfig d = parse_model_config(dream_config(), "dream.json");
  EXPECT_EQ(d.family, "dream");
  EXPECT_EQ(d.head_dim, 16);
  EXPECT_TRUE(d.qkv_bias);
  EXPECT_EQ(family_of(d).default_sampler(), SamplerKind::Dream);
  EXPECT_EQ(family_of(d).head_row(0), 0);
  EXPECT_EQ(family_of(d).head_row(7), 6);
  json missing = dream_config();
  missing.erase("intermediate_size");
  EXPECT_NE(error_of(missing).find("'intermediate_size' is missing"), std::string::npos);
  json scaled = dream_config();
  scaled["rope_scaling"] = json{{"type", "yarn"}};
  EXPECT_NE(error_of(scaled).find("rope_scaling"), std::string::npos);

  io::ModelConfig l = parse_model_config(json{{"model_type", "llada"}, {"d_model", 64}, {"n_layers", 2}, {"n_heads", 4},
                                              {"vocab_size", 400}, {"mask_token_id", 399}},
                                         "llada.json");
  EXPECT_EQ(l.family, "llada");
  EXPECT_EQ(l.ffn_hidden, 256) << "mlp_ratio 4 by default";
  EXPECT_EQ(family_of(l).default_sampler(), SamplerKind::Llada);
  EXPECT_EQ(family_of(l).head_row(7), 7);
  EXPECT_NE(family_of(l).chat_prompt({{"user", "hi"}}, true).find("<|start_header_id|>assistant"), std::string::npos);
  EXPECT_NE(family_of(d).chat_prompt({{"user", "hi"}}, true).find("<|im_start|>assistant\n"), std::string::npos);
}

// LLaDA2.0-flash's first layer is dense; LLaDA-MoE's are all MoE; a dense model has none.
TEST(ModelFamilies, MoeLayersListsTheLayersWithRoutedExperts) {
  const io::ModelConfig flash = load_model_config(std::string(MOSAIC_SOURCE_DIR) + "/configs/llada2-flash/config.json");
  const std::vector<int> all = flash.moe_layers();
  ASSERT_EQ(all.size(), static_cast<size_t>(flash.n_layers - 1));
  EXPECT_EQ(all.front(), 1);
  EXPECT_EQ(all.back(), flash.n_layers - 1);
  EXPECT_EQ(flash.moe_layers(4), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(flash.moe_layers(1000).size(), all.size());
  EXPECT_TRUE(parse_model_config(dream_config(), "dream.json").moe_layers().empty());
}

// Sizes no model has (a field of 2^63, a product past int64) are refused with the field named,
// before anything multiplies them (found by fuzz/fuzz_config: a signed overflow in n_params).
TEST(ModelFamilies, AbsurdSizesAreRefused) {
  json huge = dream_config();
  huge["hidden_size"] = int64_t{1} << 62;
  EXPECT_NE(error_of(huge).find("the hidden size 4611686018427387904 is past what mosaic supports"), std::string::npos)
      << error_of(huge);
  json wide = dream_config();
  wide["intermediate_size"] = 655555555555555554;
  EXPECT_NE(error_of(wide).find("the FFN size"), std::string::npos) << error_of(wide);
  json many = dream_config();  // each size allowed, their product not
  many["hidden_size"] = 1 << 20;
  many["num_attention_heads"] = 1 << 10;
  many["num_key_value_heads"] = 1 << 10;
  many["intermediate_size"] = 1 << 22;
  many["num_hidden_layers"] = 1 << 16;
  EXPECT_NE(error_of(many).find("parameters, past what mosaic supports"), std::string::npos) << error_of(many);
}

TEST(ModelFamilies, DreamGraphsNameQwen2WeightsWithBiases) {
  io::ModelConfig d = parse_model_config(dream_config(), "dream.json");
  Graph g = build_step_graph(d, GraphOptions{});
  int biases = 0;
  bool lm_head = false;
  for (const TensorDesc& t : g.tensors) {
    if (t.kind != TensorKind::Weight) continue;
    EXPECT_TRUE(t.weight.rfind("model.", 0) == 0 || t.weight == "lm_head.weight") << t.weight;
    biases += t.weight.find("_proj.bias") != std::string::npos;
    lm_head |= t.weight == "lm_head.weight";
  }
  EXPECT_EQ(biases, 3 * 2) << "q, k and v biases in both layers";
  EXPECT_TRUE(lm_head);
}

}  // namespace
}  // namespace mosaic
