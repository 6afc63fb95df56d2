#pragma once
// One global reuse plan: every planned tensor gets an offset in a single arena such that
// tensors alive at the same time never overlap.
#include <cstddef>
#include <vector>

#include "plan/liveness.h"

namespace mosaic {

constexpr size_t kTensorAlignment = 256;  // cuBLASLt and vector loads want aligned rows

struct Placement {
  std::vector<size_t> offset;  // per tensor; meaningless where !life[t].planned()
  size_t arena_bytes = 0;
  size_t persistent_bytes = 0;  // the arena's prefix that holds the persistent tensors
};

// Persistent tensors (`persistent[t]`) first, packed at the arena's start in tensor order, so
// that their offsets do not depend on the step's shape or chunking. Then greedy by size with
// best fit: largest tensors first, each into the smallest gap between tensors it overlaps in
// time (or on top). Near the peak of live bytes for the layered graphs mosaic builds; the
// tests pin the invariants, not optimality.
Placement plan_offsets(const std::vector<Lifetime>& life, size_t alignment = kTensorAlignment,
                       const std::vector<bool>& persistent = {});

size_t align_up(size_t v, size_t a);

}  // namespace mosaic
