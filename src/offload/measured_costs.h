#pragma once
// The refresh interval's cost-model inputs, measured on this machine: the backend's host-to-
// device copy bandwidth (a host memcpy on the CPU backend, the simulated device), and the CPU
// expert kernel's time for one expert of this model over 1 and over 8 rows.
#include <cstdint>

#include "backend/backend.h"
#include "offload/refresh_interval.h"

namespace mosaic::offload {

OffloadCosts measure_costs(Backend& be, int64_t d_model, int64_t expert_ffn);

}  // namespace mosaic::offload
