#pragma once
// A counter-based noise source shared with tools/reference/noise.py, so that sampling
// with temperature > 0 and random remasking can be compared token for token with the
// reference sampler. torch.rand_like draws depend on the whole L x V tensor's layout;
// this draws each uniform from (seed, stream, step, position, column) alone, so the
// mask-only path (which never forms L x V) sees the very same numbers.
#include <cstdint>

#if defined(__CUDACC__)
#define MOSAIC_HOST_DEVICE __host__ __device__
#else
#define MOSAIC_HOST_DEVICE
#endif

namespace mosaic {

// One stream per kind of draw, so that no two draws share numbers. The eval stream (3) is
// decode/diffusion_loss.h's; 4 and 5 are Dream's origin transfers and alg_temp selection.
enum NoiseStream : uint64_t { kGumbelStream = 1, kRemaskStream = 2, kOriginStream = 4, kAlgStream = 5 };

MOSAIC_HOST_DEVICE inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in the open interval (0, 1): never 0, so -log(u) is finite and positive.
MOSAIC_HOST_DEVICE inline double counter_uniform(uint64_t seed, uint64_t stream, uint64_t step, uint64_t pos,
                              uint64_t col) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ stream);
  h = splitmix64(h ^ step);
  h = splitmix64(h ^ pos);
  h = splitmix64(h ^ col);
  return (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;
}

}  // namespace mosaic
