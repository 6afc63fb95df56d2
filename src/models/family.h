#pragma once
// A model family (LLaDA, Dream, ...) is one file, models/<family>.cpp, behind this interface:
// which config.json it reads, how its weights are named and wired into a step graph (with
// the shared blocks of models/blocks.h), which hidden row predicts which position, its chat
// format and its official sampler. models/registry.cpp lists the families; config.json's
// model_type picks one.
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <utility>
#include <vector>

#include "graph/graph.h"
#include "io/model_config.h"
#include "models/blocks.h"

namespace mosaic {

namespace io {
class Checkpoint;
}

using ChatMessages = std::vector<std::pair<std::string, std::string>>;  // (role, content)

// The official generate() a family ships with (decode/<kind>_sampler).
enum class SamplerKind { Llada, Dream, Llada2 };

class ModelFamily {
 public:
  virtual ~ModelFamily() = default;
  virtual std::string name() const = 0;                     // "llada"
  virtual std::vector<std::string> model_types() const = 0;  // config.json model_type values, lower case
  // config.json `architectures` entries that pick this family whatever model_type says
  // (LLaDA-MoE's files say model_type "llada", as LLaDA-8B's do).
  virtual std::vector<std::string> architectures() const { return {}; }
  // config.json -> the engine's config (family-specific fields stay reachable through c.raw).
  virtual io::ModelConfig parse_config(const io::ConfigFields& f) const = 0;
  // Whether a checkpoint stores q, k and v as one fused tensor.
  virtual bool fused_qkv(const io::ModelConfig& c, const io::Checkpoint& ck) const = 0;
  virtual Graph build_step_graph(const io::ModelConfig& c, const GraphOptions& o) const = 0;
  // The hidden row whose logits predict position `pos` (Dream: the row before).
  virtual int64_t head_row(int64_t pos) const { return pos; }
  // The prompt text of a conversation in the family's chat format, for encoding with
  // special tokens parsed.
  virtual std::string chat_prompt(const ChatMessages& messages, bool add_generation_prompt) const = 0;
  virtual SamplerKind default_sampler() const = 0;
};

// Every family mosaic knows, in registry order.
const std::vector<const ModelFamily*>& model_families();
// The family of a parsed config (by c.family).
const ModelFamily& family_of(const io::ModelConfig& c);

// config.json -> the family its model_type names -> the config. Unknown or missing types get
// the list of known ones.
io::ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
io::ModelConfig load_model_config(const std::string& path);

// The step graph of any family (family_of(c).build_step_graph).
Graph build_step_graph(const io::ModelConfig& c, const GraphOptions& o);

}  // namespace mosaic
