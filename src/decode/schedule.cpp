#include "decode/schedule.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace mosaic {

void check_block_schedule(int64_t gen_length, int64_t block_length, int64_t steps) {
  MOSAIC_CHECK(gen_length > 0, "--gen-length must be positive (got {})", gen_length);
  MOSAIC_CHECK(block_length > 0, "--block-length must be positive (got {})", block_length);
  MOSAIC_CHECK(gen_length % block_length == 0,
               "--gen-length {} is not a multiple of --block-length {}: the sampler fills whole blocks", gen_length,
               block_length);
  const int64_t blocks = gen_length / block_length;
  MOSAIC_CHECK(steps > 0 && steps % blocks == 0,
               "--steps {} must be a positive multiple of the number of blocks ({} = --gen-length {} / "
               "--block-length {}), since each block gets steps/blocks steps",
               steps, blocks, gen_length, block_length);
}

std::vector<int64_t> transfer_schedule(int64_t masked, int64_t steps) {
  MOSAIC_CHECK(steps > 0, "the schedule needs at least one step per block");
  std::vector<int64_t> n(static_cast<size_t>(steps), masked / steps);
  for (int64_t i = 0; i < masked % steps; ++i) ++n[static_cast<size_t>(i)];
  return n;
}

std::vector<int64_t> top_k_indices(const std::vector<float>& conf, int64_t k) {
  std::vector<int64_t> idx(conf.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::clamp<int64_t>(k, 0, static_cast<int64_t>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    if (conf[a] != conf[b]) return conf[a] > conf[b];
    return a < b;
  });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

}  // namespace mosaic
