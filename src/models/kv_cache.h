#pragma once
// Cached decoding's vocabulary: the cache modes (Fast-dLLM's prefix and dual caches,
// Sparse-dLLM's attention-guided eviction), the kind of step a cached generation takes, and
// the cache's size. The caches themselves are persistent tensors of the step graph
// (models/blocks.cpp), planned in the arena with the step's transients.
#include <cstdint>
#include <string>

namespace mosaic {

enum class CacheMode : uint8_t {
  None,    // every step runs the whole sequence
  Prefix,  // keys/values of the positions before the block, stored by the block's first step
  Dual,    // keys/values of every position, stored by the block's first step
  Sparse,  // the block's second step keeps the most attended outside positions of every layer
};

// What one step of a cached generation does with the cache.
enum class CacheStep : uint8_t {
  Full,    // the whole sequence, no cache read or written (the caches are kept)
  Store,   // the whole sequence; stores the cache (prefix/dual: all keys/values; sparse: selects)
  Cached,  // only some rows; their fresh keys/values go into the cache, attention reads all of it
};

struct CacheOptions {
  CacheMode mode = CacheMode::None;
  double sparse_keep = 0.5;  // the fraction of outside positions a sparse cache keeps, (0, 1]
  int sparse_kernel = 3;     // the max-pool width over the scores, odd
};

CacheMode parse_cache_mode(const std::string& s);  // errors name --cache
std::string cache_mode_name(CacheMode m);
// Errors name --sparse-keep / --sparse-kernel.
void validate_cache_options(const CacheOptions& o);

// Rows of each layer's key (and value) cache for a sequence of `tokens` denoised in blocks of
// `block` rows: every position for prefix and dual (a prefix cache's cached steps write the
// block and what follows it behind the prefix), int((tokens - block) * keep) for sparse (the
// block's fresh keys stay apart from the cache: attention reads both).
int64_t cache_rows(const CacheOptions& o, int64_t tokens, int64_t block);
// Sparse-dLLM's count of kept outside positions: int(n * keep), as Python computes it.
int64_t sparse_kept_rows(int64_t outside, double keep);

}  // namespace mosaic
