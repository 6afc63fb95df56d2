#include "models/kv_cache.h"

#include "core/error.h"

namespace mosaic {

CacheMode parse_cache_mode(const std::string& s) {
  if (s == "none") return CacheMode::None;
  if (s == "prefix") return CacheMode::Prefix;
  if (s == "dual") return CacheMode::Dual;
  if (s == "sparse") return CacheMode::Sparse;
  MOSAIC_FAIL("--cache '{}' is not known: use none, prefix, dual or sparse", s);
}

std::string cache_mode_name(CacheMode m) {
  switch (m) {
    case CacheMode::None: return "none";
    case CacheMode::Prefix: return "prefix";
    case CacheMode::Dual: return "dual";
    case CacheMode::Sparse: return "sparse";
  }
  return "?";
}

void validate_cache_options(const CacheOptions& o) {
  MOSAIC_CHECK(o.sparse_keep > 0.0 && o.sparse_keep <= 1.0, "--sparse-keep must be in (0, 1] (got {})",
               o.sparse_keep);
  MOSAIC_CHECK(o.sparse_kernel >= 1 && o.sparse_kernel % 2 == 1,
               "--sparse-kernel must be an odd width >= 1 (got {}): the pooled scores keep one per position",
               o.sparse_kernel);
}

int64_t sparse_kept_rows(int64_t outside, double keep) {
  return static_cast<int64_t>(static_cast<double>(outside) * keep);
}

int64_t cache_rows(const CacheOptions& o, int64_t tokens, int64_t block) {
  switch (o.mode) {
    case CacheMode::None: return 0;
    case CacheMode::Prefix:
    case CacheMode::Dual: return tokens;
    case CacheMode::Sparse: return sparse_kept_rows(tokens - block, o.sparse_keep);
  }
  return 0;
}

}  // namespace mosaic
