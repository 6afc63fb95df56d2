#pragma once
// Checkpoint tensor names of each architecture, as the official Hugging Face checkpoints
// spell them. Everything else in the engine refers to weights by role.
#include <string>

#include "io/model_config.h"

namespace mosaic {

enum class WeightRole { AttnNorm, Q, K, V, FusedQKV, AttnOut, FfnNorm, Gate, Up, Down };

struct WeightNames {
  io::Arch arch;
  std::string embed() const;
  std::string final_norm() const;
  std::string lm_head(bool tied) const;
  std::string layer(int layer, WeightRole role) const;  // ".weight"
  std::string bias(int layer, WeightRole role) const;   // ".bias" (q/k/v)
};

}  // namespace mosaic
