#pragma once
// The cost model's inputs on the simulated device (the CPU backend): "host to device" is a
// host memcpy, an expert's CPU time the CPU kernel's, both measured here on this machine.
#include <cstdint>

#include "offload/refresh_interval.h"

namespace mosaic::offload {

OffloadCosts measure_simulated_costs(int64_t d_model, int64_t expert_ffn);

}  // namespace mosaic::offload
