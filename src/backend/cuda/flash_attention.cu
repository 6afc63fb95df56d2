// Flash attention, bidirectional (no mask), bf16 in / bf16 out, fp32 softmax and accumulators.
//
// FA2-style on the warp-level tensor-core path (mma.sync m16n8k16, sm_80+, runs on sm_90):
//   - one CTA per (query tile of BR rows, head); blockIdx.x = query tile (fastest), blockIdx.y = head, so
//     the CTAs that share a kv head are launched together and reuse its K/V tiles through L2;
//   - each warp owns 16*MT query rows; its Q fragments live in registers (or are re-read from shared
//     memory with ldmatrix when registers are short: MT = 2 at hd 128);
//   - K/V tiles of BC keys stream through a STAGES-deep cp.async ring in shared memory, 16-byte chunks
//     XOR-swizzled by (row & 7) so that ldmatrix (and ldmatrix.trans for V) is bank-conflict free;
//   - S = Q K^T and O += P V on mma.sync with fp32 accumulators; online softmax in the exp2 domain with
//     scale*log2(e) folded into one FFMA per score; P goes from the S accumulators straight into A
//     fragments (no shared-memory round trip);
//   - PIPE variants compute S for tile j+1 before the softmax of tile j so that the tensor pipe and the
//     MUFU/FMA work of one warp can overlap (needs two S tiles in registers and 3 stages);
//   - the key tail (kv_rows % BC) is zero-filled by cp.async and masked to -inf in the first tile
//     processed (tiles run from the last one down, so only the prologue masks); query rows past `rows`
//     are zero-filled and never stored. No access leaves [0, rows) / [0, kv_rows).
// Several tile configurations are compiled; flash_attention() picks one per head dim, and
// detail::flash_attention_variant() lets tests and benchmarks run each of them.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/ptx.cuh"

namespace mosaic::cuda {

namespace {

using namespace ptx;

constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

template <int HD_, int WARPS_, int MT_, int BC_, bool Q_SMEM_, int STAGES_, bool PIPE_, int MINB_>
struct Cfg {
  static constexpr int HD = HD_;          // head dim
  static constexpr int WARPS = WARPS_;    // warps per CTA
  static constexpr int MT = MT_;          // m16 tiles per warp
  static constexpr int BC = BC_;          // keys per K/V tile
  static constexpr bool Q_SMEM = Q_SMEM_; // Q fragments re-read from shared memory (else in registers)
  static constexpr int STAGES = STAGES_;  // K/V ring depth
  static constexpr bool PIPE = PIPE_;     // S(j+1) issued before softmax(j)
  static constexpr int MINB = MINB_;      // __launch_bounds__ min blocks per SM
  static constexpr int THREADS = WARPS * 32;
  static constexpr int MW = 16 * MT;      // query rows per warp
  static constexpr int BR = WARPS * MW;   // query rows per CTA
  static constexpr int ROW_BYTES = HD * 2;
  static constexpr int CPR = HD / 8;      // 16-byte chunks per row
  static constexpr int RPP = THREADS / CPR;  // rows per cooperative load pass
  static constexpr int KSTEPS = HD / 16;  // k16 steps of Q K^T
  static constexpr int NS = BC / 8;       // n8 tiles of S
  static constexpr int NO = HD / 8;       // n8 tiles of O
  static constexpr int PSTEPS = BC / 16;  // k16 steps of P V
  static constexpr int Q_BYTES = BR * ROW_BYTES;
  static constexpr int KV_TILE_BYTES = BC * ROW_BYTES;
  static constexpr int STAGE_BYTES = 2 * KV_TILE_BYTES;  // K then V
  // +1024: the kernel rounds its base up to 1024 bytes so that the XOR swizzle can act on addresses.
  static constexpr int SMEM_BYTES = Q_BYTES + STAGES * STAGE_BYTES + 1024;
  static constexpr int QR_MT = Q_SMEM ? 1 : MT;  // shapes of the Q register array (dummy when in smem)
  static constexpr int QR_K = Q_SMEM ? 1 : KSTEPS;

  static_assert(HD == 64 || HD == 128, "head dim");
  static_assert(BC % 16 == 0 && BC >= 16, "key tile");
  static_assert(STAGES >= 2 && (!PIPE || STAGES >= 3), "stages");
  static_assert(THREADS % CPR == 0 && RPP % 8 == 0, "swizzle phase must be constant per thread");
  static_assert(BC % RPP == 0 && BR % RPP == 0, "cooperative loads");
  static_assert((MW * CPR) % 32 == 0, "epilogue copy");
};

struct Params {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  bf16* o;
  int64_t rows, kv_rows;
  int64_t q_ld, kv_ld;  // elements per row
  int group;            // heads / kv_heads
  int n_tiles;          // ceil(kv_rows / BC)
  float sl2;            // scale * log2(e)
  // Split-KV (flash_attention_split): CTA z < splits runs `per` key tiles of (k, v) from tile
  // z * per; a CTA z >= splits runs `per2` tiles of a second source (k2, v2, kv_rows2). Each
  // writes its rows' O / l in fp32 to o_part[z] and log2 of its softmax sum to lse[z].
  const bf16* k2 = nullptr;
  const bf16* v2 = nullptr;
  int64_t kv_rows2 = 0;
  int splits = 0, per = 0, per2 = 0;
  float* o_part = nullptr;  // [z][rows][heads * HD]
  float* lse = nullptr;     // [z][heads][rows]
  // Block-causal (split kernel only): query i at position positions[i] (or pos0 + i) sees the
  // keys below (p / block + 1) * block, counting the first source's keys, then the second's.
  int64_t block = 0;
  const int32_t* positions = nullptr;
  int64_t pos0 = 0;
  // A batch's packed sequences (split kernel only, one source): query i sees keys
  // [key_lo[i], key_hi[i]) instead.
  const int32_t* key_lo = nullptr;
  const int32_t* key_hi = nullptr;
  // One split (split kernel only): O / l goes straight to o in bf16, with no partials to merge.
  bool direct = false;
};

// ---------------------------------------------------------------------------------------------
// Warp-level pieces. Addresses are absolute shared-memory addresses whose bits 4..7 are exactly the
// lane's swizzled chunk bits, so "addr ^ (kk * 32)" steps 16 columns (two chunks) in a row.
// ---------------------------------------------------------------------------------------------

// s = Q K^T for one K tile. q_lane: this lane's ldmatrix address in the Q tile (when Q_SMEM);
// k_lane: this lane's ldmatrix address in the K tile of the stage.
template <class C>
__device__ __forceinline__ void qk_tile(float (&s)[C::MT][C::NS][4], const uint32_t (&qf)[C::QR_MT][C::QR_K][4],
                                        uint32_t q_lane, uint32_t k_lane) {
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
    for (int n = 0; n < C::NS; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) s[mt][n][c] = 0.f;
#pragma unroll
  for (int kk = 0; kk < C::KSTEPS; ++kk) {
    uint32_t a[C::MT][4];
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt) {
      if constexpr (C::Q_SMEM) {
        ldsm_x4(a[mt], (q_lane ^ (kk * 32)) + mt * 16 * C::ROW_BYTES);
      } else {
#pragma unroll
        for (int c = 0; c < 4; ++c) a[mt][c] = qf[mt][kk][c];
      }
    }
    const uint32_t kaddr = k_lane ^ (kk * 32);
#pragma unroll
    for (int np = 0; np < C::NS / 2; ++np) {
      uint32_t b[4];
      ldsm_x4(b, kaddr + np * 16 * C::ROW_BYTES);
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt) {
        mma_bf16(s[mt][2 * np], a[mt], b[0], b[1]);
        mma_bf16(s[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// Scores of keys at or past `valid` (tile-relative) become -inf.
template <class C>
__device__ __forceinline__ void mask_tail(float (&s)[C::MT][C::NS][4], int valid, int lane) {
  const int t2 = (lane & 3) * 2;
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
    for (int n = 0; n < C::NS; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c)
        if (n * 8 + t2 + (c & 1) >= valid) s[mt][n][c] = -INFINITY;
}

// Online softmax on one S tile: updates the running max m (raw scores) and the per-thread partial
// row sums l, rescales O, and turns s into unnormalised probabilities exp2(s*sl2 - m*sl2).
// The first tile sees m = -inf: alpha = exp2(-inf) = 0 and O, l are still zero. A row whose
// keys so far are all masked keeps m = -inf: its exponents use 0 in its place (no -inf - -inf).
template <class C>
__device__ __forceinline__ void softmax_tile(float (&s)[C::MT][C::NS][4], float (&o)[C::MT][C::NO][4],
                                             float (&m)[C::MT][2], float (&l)[C::MT][2], float sl2) {
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = m[mt][r];
#pragma unroll
      for (int n = 0; n < C::NS; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * r], s[mt][n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mx_s = mx == -INFINITY ? 0.f : mx;
      const float alpha = ex2((m[mt][r] - mx_s) * sl2);
      m[mt][r] = mx;
      const float msc = mx_s * sl2;
      float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
      for (int n = 0; n < C::NS; ++n) {
        const float e0 = ex2(fmaf(s[mt][n][2 * r], sl2, -msc));
        const float e1 = ex2(fmaf(s[mt][n][2 * r + 1], sl2, -msc));
        s[mt][n][2 * r] = e0;
        s[mt][n][2 * r + 1] = e1;
        sum0 += e0;
        sum1 += e1;
      }
      l[mt][r] = fmaf(l[mt][r], alpha, sum0 + sum1);
#pragma unroll
      for (int j = 0; j < C::NO; ++j) {
        o[mt][j][2 * r] *= alpha;
        o[mt][j][2 * r + 1] *= alpha;
      }
    }
  }
}

// o += P V for one V tile; P comes from the S accumulators (C layout of m16n8 == A layout of m16n8k16).
template <class C>
__device__ __forceinline__ void pv_tile(const float (&s)[C::MT][C::NS][4], float (&o)[C::MT][C::NO][4],
                                        uint32_t v_lane) {
#pragma unroll
  for (int kk = 0; kk < C::PSTEPS; ++kk) {
    uint32_t a[C::MT][4];
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt) {
      a[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
      a[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
      a[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
      a[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < C::HD / 16; ++dp) {
      uint32_t b[4];
      ldsm_x4_t(b, (v_lane ^ (dp * 32)) + kk * 16 * C::ROW_BYTES);
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt) {
        mma_bf16(o[mt][2 * dp], a[mt], b[0], b[1]);
        mma_bf16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The kernel
// ---------------------------------------------------------------------------------------------

template <class C, bool SPLIT = false>
__global__ void __launch_bounds__(C::THREADS, C::MINB) flash_fwd_kernel(const Params p) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (raw & 1023u)) & 1023u;
  uint8_t* const smem = smem_raw + pad;  // generic pointer, 1024-aligned in the shared window
  const uint32_t s_q = raw + pad;        // Q tile (later: O staging)
  const uint32_t s_kv = s_q + C::Q_BYTES;  // stage st: K at s_kv + st*STAGE_BYTES, V at + KV_TILE_BYTES

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int h = blockIdx.y;
  const int kvh = h / p.group;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * C::BR;
  // The keys this CTA runs: tiles [tile0, tile0 + nt) of one source.
  const bf16* k_base = p.k;
  const bf16* v_base = p.v;
  int64_t kv_rows = p.kv_rows;
  int tile0 = 0, nt = p.n_tiles;
  if constexpr (SPLIT) {
    const bool second = static_cast<int>(blockIdx.z) >= p.splits;
    if (second) k_base = p.k2, v_base = p.v2, kv_rows = p.kv_rows2;
    const int per = second ? p.per2 : p.per;
    tile0 = (static_cast<int>(blockIdx.z) - (second ? p.splits : 0)) * per;
    nt = min(per, static_cast<int>((kv_rows + C::BC - 1) / C::BC) - tile0);
  }
  // Block-causal: each of this thread's rows sees the keys (counted across both sources) below
  // its limit; the CTA runs only the tiles some row of its query tile sees.
  const int64_t key0 = SPLIT && static_cast<int>(blockIdx.z) >= p.splits ? p.kv_rows : 0;
  int64_t lim[C::MT][2] = {}, lo[C::MT][2] = {};
  int64_t cta_min = INT64_MAX, cta_lo_max = 0;
  // The keys [warp_lo, warp_hi) some row of this warp sees: a warp skips the tiles outside them
  // (with key ranges a query tile may hold two sequences, each warp's rows one of them).
  int64_t warp_lo = INT64_MIN, warp_hi = INT64_MAX;
  // Keys of this source at or past key_end are loaded as zeros: no row of the CTA sees them, and
  // with a cache they may not be written yet (whatever the arena held: a NaN there times a zero
  // probability would still be NaN).
  int64_t key_end = kv_rows;
  if constexpr (SPLIT) {
    if (p.block > 0 || p.key_hi) {
      auto limit_of = [&](int64_t row) -> int64_t {
        if (p.key_hi) return p.key_hi[row];
        const int64_t pos = p.positions ? p.positions[row] : p.pos0 + row;
        return (pos / p.block + 1) * p.block;
      };
      auto lo_of = [&](int64_t row) -> int64_t { return p.key_lo ? p.key_lo[row] : 0; };
      int64_t cta_max = 0, cta_lo_min = INT64_MAX;
      for (int64_t row = q0; row < min(q0 + C::BR, p.rows); ++row) {
        const int64_t v = limit_of(row), l0 = lo_of(row);
        cta_max = max(cta_max, v);
        cta_min = min(cta_min, v);
        cta_lo_min = min(cta_lo_min, l0);
        cta_lo_max = max(cta_lo_max, l0);
      }
      const int gq = (tid & 31) >> 2;
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int64_t row = q0 + warp * C::MW + mt * 16 + gq + 8 * r;
          lim[mt][r] = row < p.rows ? limit_of(row) : INT64_MAX;
          lo[mt][r] = row < p.rows ? lo_of(row) : 0;
        }
      {
        int64_t wl = INT64_MAX, wh = INT64_MIN;  // over this thread's rows inside [0, rows)
#pragma unroll
        for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
          for (int r = 0; r < 2; ++r)
            if (q0 + warp * C::MW + mt * 16 + gq + 8 * r < p.rows) wl = min(wl, lo[mt][r]), wh = max(wh, lim[mt][r]);
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) {
          wl = min(wl, static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(wl), off)));
          wh = max(wh, static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(wh), off)));
        }
        warp_lo = wl - key0;  // in this source's keys
        warp_hi = wh == INT64_MIN ? INT64_MIN : wh - key0;
      }
      // Key ranges: the splits share this query tile's own span of tiles, from its rows' first
      // key to their last, not the whole source.
      if (p.key_hi) {
        const int64_t all_tiles = (kv_rows + C::BC - 1) / C::BC;
        const int64_t t_lo = cta_lo_min == INT64_MAX ? 0 : cta_lo_min / C::BC;
        const int64_t t_hi = min(all_tiles, (cta_max + C::BC - 1) / C::BC);
        const int64_t per = (max(t_hi - t_lo, int64_t{0}) + p.splits - 1) / p.splits;
        tile0 = static_cast<int>(t_lo + static_cast<int64_t>(blockIdx.z) * per);
        nt = static_cast<int>(min(per, t_hi - tile0));
      }
      key_end = min(kv_rows, max(cta_max - key0, int64_t{0}));
      const int64_t seen = cta_max - key0 - static_cast<int64_t>(tile0) * C::BC;  // keys of this range seen
      nt = seen <= 0 ? 0 : min(nt, static_cast<int>((seen + C::BC - 1) / C::BC));
    }
    if (nt <= 0) {  // no key of this split is seen by any row of the tile: an empty partial
      const int gq = (tid & 31) >> 2, t4q = tid & 3;
      if (p.direct) {  // no partials: the rows' output is zeros
        bf16* const out = p.o + static_cast<int64_t>(h) * C::HD;
#pragma unroll
        for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int64_t grow = q0 + warp * C::MW + mt * 16 + gq + 8 * r;
            if (grow >= p.rows) continue;
#pragma unroll
            for (int j = 0; j < C::NO; ++j)
              *reinterpret_cast<uint32_t*>(out + grow * p.q_ld + j * 8 + t4q * 2) = pack_bf16(0.f, 0.f);
          }
        return;
      }
      float* const o_part = p.o_part + static_cast<int64_t>(blockIdx.z) * p.rows * p.q_ld + static_cast<int64_t>(h) * C::HD;
      float* const lse = p.lse + (static_cast<int64_t>(blockIdx.z) * gridDim.y + h) * p.rows;
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int64_t grow = q0 + warp * C::MW + mt * 16 + gq + 8 * r;
          if (grow >= p.rows) continue;
#pragma unroll
          for (int j = 0; j < C::NO; ++j)
            *reinterpret_cast<float2*>(o_part + grow * p.q_ld + j * 8 + t4q * 2) = make_float2(0.f, 0.f);
          if (t4q == 0) lse[grow] = -INFINITY;
        }
      return;
    }
  }
  // Scores of keys past a row's limit become -inf (tile t in processing order).
  auto mask_rows = [&](float (&s)[C::MT][C::NS][4], int t) {
    if constexpr (SPLIT) {
      if (p.block <= 0 && !p.key_hi) return;
      const int64_t kv0 = key0 + static_cast<int64_t>(tile0 + nt - 1 - t) * C::BC;
      if (kv0 + C::BC <= cta_min && kv0 >= cta_lo_max) return;  // every row sees the whole tile
      const int t2 = (tid & 3) * 2;
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
        for (int n = 0; n < C::NS; ++n)
#pragma unroll
          for (int c = 0; c < 4; ++c)
            if (const int64_t key = kv0 + n * 8 + t2 + (c & 1); key >= lim[mt][c >> 1] || key < lo[mt][c >> 1])
              s[mt][n][c] = -INFINITY;
    }
  };

  // Whether some row of this warp sees a key of tile t (processing order); a warp that does not
  // leaves its S, softmax and P V for the tile out (its rows' state stays as it was).
  auto warp_sees = [&](int t) {
    if constexpr (SPLIT) {
      const int64_t kv0 = static_cast<int64_t>(tile0 + nt - 1 - t) * C::BC;
      return kv0 < warp_hi && kv0 + C::BC > warp_lo;
    }
    return true;
  };

  // ---- cooperative cp.async loaders: thread -> (row ld_row + it*RPP, chunk ld_ch)
  const int ld_row = tid / C::CPR, ld_ch = tid % C::CPR;
  const uint32_t ld_soff = ld_row * C::ROW_BYTES + ((ld_ch ^ (ld_row & 7)) << 4);  // RPP % 8 == 0

  {
    const bf16* src = p.q + static_cast<int64_t>(h) * C::HD + ld_ch * 8;
#pragma unroll
    for (int it = 0; it < C::BR / C::RPP; ++it) {
      const int64_t row = q0 + ld_row + it * C::RPP;
      const bool ok = row < p.rows;
      cp_async_16(s_q + ld_soff + it * C::RPP * C::ROW_BYTES, src + (ok ? row : 0) * p.q_ld, ok);
    }
  }
  const bf16* k_src = k_base + static_cast<int64_t>(kvh) * C::HD + ld_ch * 8;
  const bf16* v_src = v_base + static_cast<int64_t>(kvh) * C::HD + ld_ch * 8;
  // Tile t (processing order) holds keys [(tile0+nt-1-t)*BC, +BC); it lives in stage t % STAGES.
  auto stage_of = [&](int t) -> uint32_t {
    return s_kv + static_cast<uint32_t>(t % C::STAGES) * C::STAGE_BYTES;
  };
  auto load_kv = [&](int t) {
    const uint32_t dst = stage_of(t) + ld_soff;
    const int64_t kv0 = static_cast<int64_t>(tile0 + nt - 1 - t) * C::BC;
#pragma unroll
    for (int it = 0; it < C::BC / C::RPP; ++it) {
      const int64_t row = kv0 + ld_row + it * C::RPP;
      const bool ok = row < key_end;
      const int64_t off = (ok ? row : 0) * p.kv_ld;
      cp_async_16(dst + it * C::RPP * C::ROW_BYTES, k_src + off, ok);
      cp_async_16(dst + C::KV_TILE_BYTES + it * C::RPP * C::ROW_BYTES, v_src + off, ok);
    }
  };

  // ---- per-lane ldmatrix addresses (stage-relative for K/V)
  // A operand (Q) and trans B operand (V): rows (lane&7) + 8*((lane>>3)&1), chunk (lane>>4).
  const uint32_t a_off =
      ((lane & 7) + ((lane >> 3) & 1) * 8) * C::ROW_BYTES + ((((lane >> 4) & 1) ^ (lane & 7)) << 4);
  // B operand (K, non-trans): rows (lane&7) + 8*(lane>>4), chunk ((lane>>3)&1).
  const uint32_t b_off =
      ((lane & 7) + ((lane >> 4) & 1) * 8) * C::ROW_BYTES + ((((lane >> 3) & 1) ^ (lane & 7)) << 4);
  const uint32_t q_lane = s_q + warp * C::MW * C::ROW_BYTES + a_off;

  // ---- prologue: Q and tiles 0 .. STAGES-2 in flight, wait for Q + tile 0
  load_kv(0);
  cp_async_commit();
#pragma unroll
  for (int t = 1; t < C::STAGES - 1; ++t) {
    if (t < nt) load_kv(t);
    cp_async_commit();
  }
  cp_async_wait<C::STAGES - 2>();
  __syncthreads();

  uint32_t qf[C::QR_MT][C::QR_K][4];
  if constexpr (!C::Q_SMEM) {
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
      for (int kk = 0; kk < C::KSTEPS; ++kk) ldsm_x4(qf[mt][kk], (q_lane ^ (kk * 32)) + mt * 16 * C::ROW_BYTES);
  }
  if constexpr (!C::PIPE) {
    // The last ring slot was kept free so far (the loop refills slot t % STAGES after tile t).
    if (C::STAGES - 1 < nt) load_kv(C::STAGES - 1);
    cp_async_commit();
  }

  float o[C::MT][C::NO][4];
  float m[C::MT][2], l[C::MT][2];
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt) {
#pragma unroll
    for (int j = 0; j < C::NO; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) o[mt][j][c] = 0.f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
  }

  float sa[C::MT][C::NS][4];
  if (warp_sees(0)) {
    qk_tile<C>(sa, qf, q_lane, stage_of(0) + b_off);
    // 1 .. BC keys in tile 0 when it is the source's last tile; more (a full tile) otherwise.
    const int64_t tail = kv_rows - static_cast<int64_t>(tile0 + nt - 1) * C::BC;
    if (tail < C::BC) mask_tail<C>(sa, static_cast<int>(tail), lane);
    mask_rows(sa, 0);
  }

  if constexpr (!C::PIPE) {
    for (int i = 0; i < nt; ++i) {
      if (warp_sees(i)) {
        softmax_tile<C>(sa, o, m, l, p.sl2);
        pv_tile<C>(sa, o, stage_of(i) + C::KV_TILE_BYTES + a_off);
      }
      if (i + 1 < nt) {
        // Issued so far: tiles 0 .. i+STAGES-1; tile i+1 must have landed.
        cp_async_wait<C::STAGES - 2>();
        __syncthreads();  // tile i+1 visible to all; everyone is done with tile i's slot
        if (i + C::STAGES < nt) load_kv(i + C::STAGES);
        cp_async_commit();
        if (warp_sees(i + 1)) {
          qk_tile<C>(sa, qf, q_lane, stage_of(i + 1) + b_off);
          mask_rows(sa, i + 1);
        }
      }
    }
  } else {
    float sb[C::MT][C::NS][4];
    // One step: S(i+1) first (independent of the softmax of tile i), then softmax(i) and P(i) V(i).
    auto step = [&](float (&cur)[C::MT][C::NS][4], float (&nxt)[C::MT][C::NS][4], int i) {
      if (i + 1 < nt) {
        // Issued so far: tiles 0 .. i+STAGES-2; tile i+1 must have landed.
        cp_async_wait<C::STAGES - 3>();
        __syncthreads();  // everyone is done with tile i-1 (K(i) and V(i-1) reads): its slot is free
        if (i + C::STAGES - 1 < nt) load_kv(i + C::STAGES - 1);
        cp_async_commit();
        if (warp_sees(i + 1)) {
          qk_tile<C>(nxt, qf, q_lane, stage_of(i + 1) + b_off);
          mask_rows(nxt, i + 1);
        }
      }
      if (warp_sees(i)) {
        softmax_tile<C>(cur, o, m, l, p.sl2);
        pv_tile<C>(cur, o, stage_of(i) + C::KV_TILE_BYTES + a_off);
      }
    };
    int i = 0;
    for (; i + 1 < nt; i += 2) {
      step(sa, sb, i);
      step(sb, sa, i + 1);
    }
    if (i < nt) step(sa, sb, i);
  }

  const int g = lane >> 2, t4 = lane & 3;
  if constexpr (SPLIT) {
    if (!p.direct) {
      // ---- split epilogue: this CTA's O / l in fp32 and log2 of its row sums, for split_combine
      const int64_t q_ld = p.q_ld;
      float* const o_part = p.o_part + static_cast<int64_t>(blockIdx.z) * p.rows * q_ld + static_cast<int64_t>(h) * C::HD;
      float* const lse = p.lse + (static_cast<int64_t>(blockIdx.z) * gridDim.y + h) * p.rows;
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          float lt = l[mt][r];
          lt += __shfl_xor_sync(0xffffffffu, lt, 1);
          lt += __shfl_xor_sync(0xffffffffu, lt, 2);
          const int64_t grow = q0 + warp * C::MW + mt * 16 + g + 8 * r;
          if (grow >= p.rows) continue;
          const float inv = lt > 0.f ? __frcp_rn(lt) : 0.f;  // 0: the row saw no key of this split
#pragma unroll
          for (int j = 0; j < C::NO; ++j)
            *reinterpret_cast<float2*>(o_part + grow * q_ld + j * 8 + t4 * 2) =
                make_float2(o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv);
          if (t4 == 0) lse[grow] = lt > 0.f ? m[mt][r] * p.sl2 + log2f(lt) : -INFINITY;
        }
      }
      return;
    }
  }
  // ---- epilogue: O / l -> bf16, staged through this warp's own rows of the Q tile, 16-byte stores
  __syncwarp();  // this warp's Q reads (Q_SMEM) are complete before its rows are overwritten
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float lt = l[mt][r];
      lt += __shfl_xor_sync(0xffffffffu, lt, 1);
      lt += __shfl_xor_sync(0xffffffffu, lt, 2);
      // lt >= 1 where the row saw a key (its max contributes exp2(0)); 0: a key-range row that saw none
      const float inv = lt > 0.f ? __frcp_rn(lt) : 0.f;
      const int row = warp * C::MW + mt * 16 + g + 8 * r;  // row & 7 == g
#pragma unroll
      for (int j = 0; j < C::NO; ++j) {
        const uint32_t val = pack_bf16(o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv);
        *reinterpret_cast<uint32_t*>(smem + row * C::ROW_BYTES + ((j ^ g) << 4) + t4 * 4) = val;
      }
    }
  }
  __syncwarp();
  bf16* const out = p.o + static_cast<int64_t>(h) * C::HD;
#pragma unroll
  for (int it = 0; it < C::MW * C::CPR / 32; ++it) {
    const int c = lane + it * 32;
    const int rl = c / C::CPR, ch = c % C::CPR;
    const int row = warp * C::MW + rl;
    const int64_t grow = q0 + row;
    if (grow < p.rows) {
      const uint4 val = *reinterpret_cast<const uint4*>(smem + row * C::ROW_BYTES + ((ch ^ (rl & 7)) << 4));
      *reinterpret_cast<uint4*>(out + grow * p.q_ld + ch * 8) = val;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Hopper path: warpgroup MMA (wgmma, sm_90a only; compiled out of plain sm_90 builds)
//
// One CTA per (64*NWG query rows, head); warpgroup w owns query rows [64w, 64w+64). All threads
// stream Q, K, V tiles with cp.async into shared memory laid out exactly as the 128-byte-swizzle
// canonical layout of wgmma: 64-column halves of 128-byte rows, 16-byte chunk c of row r stored at
// chunk c ^ (r & 7), every region 1024-aligned. S = Q K^T is wgmma m64nBCk16 with both operands in
// shared memory (K-major); O += P V is wgmma m64nHDk16 with P from registers (the S accumulator
// layout is the A fragment layout) and V from shared memory read N-major (transposed descriptor).
// K and V have separate two-slot rings. OVERLAP: S(j+1) and P(j)V(j) are in flight together and
// the softmax of tile j+1 runs while P(j)V(j) is still on the tensor cores (FA3-style).
// ---------------------------------------------------------------------------------------------

template <int HD_, int NWG_, int BC_, bool OVERLAP_, int MINB_>
struct WgCfg {
  static constexpr int HD = HD_;
  static constexpr int NWG = NWG_;  // consumer warpgroups (64 query rows each)
  static constexpr int BC = BC_;    // keys per tile (the N of the S wgmma)
  static constexpr bool OVERLAP = OVERLAP_;
  static constexpr int MINB = MINB_;
  static constexpr int THREADS = NWG * 128;
  static constexpr int BR = NWG * 64;
  static constexpr int NS = BC / 8;
  static constexpr int NO = HD / 8;
  static constexpr int HALVES = HD / 64;  // 64-column (128-byte) halves of a row
  static constexpr int CPR = HD / 8;      // 16-byte chunks per row
  static constexpr int RPP = THREADS / CPR;
  static constexpr int Q_HALF = BR * 128;
  static constexpr int Q_BYTES = HALVES * Q_HALF;
  static constexpr int KV_HALF = BC * 128;
  static constexpr int KV_SLOT = HALVES * KV_HALF;
  static constexpr int ROW_BYTES = HD * 2;  // epilogue staging rows
  static constexpr int SMEM_BYTES = Q_BYTES + 4 * KV_SLOT + 1024;
  static_assert(HD == 64 || HD == 128, "head dim");
  static_assert(BC == 64 || BC == 128, "key tile");
  static_assert(RPP % 8 == 0 && BC % RPP == 0 && BR % RPP == 0, "cooperative loads");
  static_assert(BR * ROW_BYTES <= Q_BYTES, "epilogue staging fits in the Q region");
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOSAIC_FA_WGMMA 1

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Generic-proxy shared-memory writes (cp.async here) made visible to the async proxy (wgmma).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Keeps the compiler from moving accesses of these registers across wgmma issue/wait points.
template <int N>
__device__ __forceinline__ void pin(float (&d)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int c = 0; c < 4; ++c) asm volatile("" : "+f"(d[j][c])::"memory");
}
template <int N>
__device__ __forceinline__ void pin(uint32_t (&a)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int c = 0; c < 4; ++c) asm volatile("" : "+r"(a[j][c])::"memory");
}

// Shared-memory matrix descriptor, 128-byte swizzle. Byte offsets; the fields hold them >> 4.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((addr & 0x3FFFFu) >> 4) | (static_cast<uint64_t>(lbo >> 4) << 16) |
         (static_cast<uint64_t>(sbo >> 4) << 32) | (1ull << 62);
}

// wgmma m64nNk16, fp32 accumulators, bf16 operands. SS: A and B from shared memory, both K-major.
// RS: A from registers, B from shared memory N-major (imm-trans-b = 1). scale_d = 0: D = A*B.
__device__ __forceinline__ void wgmma_ss_n64(float (&d)[8][4], uint64_t da, uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
        "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
        "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_ss_n128(float (&d)[16][4], uint64_t da, uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
        "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
        "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
        "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),
        "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
        "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]),
        "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
        "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]),
        "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
        "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),
        "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
      : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_rs_n64(float (&d)[8][4], const uint32_t (&a)[4], uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
        "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
        "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_rs_n128(float (&d)[16][4], const uint32_t (&a)[4], uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
        "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
        "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
        "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),
        "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
        "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]),
        "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
        "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]),
        "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
        "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),
        "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
}

template <int N>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], uint64_t da, uint64_t db, int scale_d) {
  if constexpr (N == 64)
    wgmma_ss_n64(d, da, db, scale_d);
  else
    wgmma_ss_n128(d, da, db, scale_d);
}
template <int N>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t db, int scale_d) {
  if constexpr (N == 64)
    wgmma_rs_n64(d, a, db, scale_d);
  else
    wgmma_rs_n128(d, a, db, scale_d);
}

// Softmax without touching O (it may still be accumulating): returns alpha per row half.
template <class C>
__device__ __forceinline__ void softmax_split(float (&s)[C::NS][4], float (&m)[2], float (&l)[2], float sl2,
                                              float (&alpha)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = m[r];
#pragma unroll
    for (int n = 0; n < C::NS; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    alpha[r] = ex2((m[r] - mx) * sl2);
    m[r] = mx;
    const float msc = mx * sl2;
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int n = 0; n < C::NS; ++n) {
      const float e0 = ex2(fmaf(s[n][2 * r], sl2, -msc));
      const float e1 = ex2(fmaf(s[n][2 * r + 1], sl2, -msc));
      s[n][2 * r] = e0;
      s[n][2 * r + 1] = e1;
      sum0 += e0;
      sum1 += e1;
    }
    l[r] = fmaf(l[r], alpha[r], sum0 + sum1);
  }
}

template <class C>
__device__ __forceinline__ void to_p(const float (&s)[C::NS][4], uint32_t (&pa)[C::BC / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < C::BC / 16; ++kk) {
    pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
    pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
    pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

template <class C>
__device__ __forceinline__ void mask_tail_wg(float (&s)[C::NS][4], int valid, int lane) {
  const int t2 = (lane & 3) * 2;
#pragma unroll
  for (int n = 0; n < C::NS; ++n)
#pragma unroll
    for (int c = 0; c < 4; ++c)
      if (n * 8 + t2 + (c & 1) >= valid) s[n][c] = -INFINITY;
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

template <class C>
__global__ void __launch_bounds__(C::THREADS, C::MINB) flash_wgmma_kernel(const Params p) {
#if defined(MOSAIC_FA_WGMMA)
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (raw & 1023u)) & 1023u;
  uint8_t* const smem = smem_raw + pad;
  const uint32_t s_q = raw + pad;                // Q: [half][BR rows][128 B]
  const uint32_t s_k = s_q + C::Q_BYTES;         // K slot i: s_k + i*KV_SLOT, [half][BC rows][128 B]
  const uint32_t s_v = s_k + 2 * C::KV_SLOT;     // V slot i: s_v + i*KV_SLOT

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const int h = blockIdx.y;
  const int kvh = h / p.group;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * C::BR;
  const int nt = p.n_tiles;

  // ---- cp.async loaders: thread -> rows ld_row + it*RPP, chunk ld_ch (half ld_ch>>3, chunk ld_ch&7)
  const int ld_row = tid / C::CPR, ld_ch = tid % C::CPR;
  const uint32_t swz = (((ld_ch & 7) ^ (ld_row & 7)) << 4) + ld_row * 128;
  const uint32_t q_dst = s_q + (ld_ch >> 3) * C::Q_HALF + swz;
  const uint32_t kv_dst = (ld_ch >> 3) * C::KV_HALF + swz;
  {
    const bf16* src = p.q + static_cast<int64_t>(h) * C::HD + ld_ch * 8;
#pragma unroll
    for (int it = 0; it < C::BR / C::RPP; ++it) {
      const int64_t row = q0 + ld_row + it * C::RPP;
      const bool ok = row < p.rows;
      cp_async_16(q_dst + it * C::RPP * 128, src + (ok ? row : 0) * p.q_ld, ok);
    }
  }
  const bf16* k_src = p.k + static_cast<int64_t>(kvh) * C::HD + ld_ch * 8;
  const bf16* v_src = p.v + static_cast<int64_t>(kvh) * C::HD + ld_ch * 8;
  // Tile t (processing order) holds keys [(nt-1-t)*BC, +BC), in slot t & 1 of its ring.
  auto load_tile = [&](const bf16* src, uint32_t ring, int t) {
    const uint32_t dst = ring + static_cast<uint32_t>(t & 1) * C::KV_SLOT + kv_dst;
    const int64_t kv0 = static_cast<int64_t>(nt - 1 - t) * C::BC;
#pragma unroll
    for (int it = 0; it < C::BC / C::RPP; ++it) {
      const int64_t row = kv0 + ld_row + it * C::RPP;
      const bool ok = row < p.kv_rows;
      cp_async_16(dst + it * C::RPP * 128, src + (ok ? row : 0) * p.kv_ld, ok);
    }
  };

  float s[C::NS][4];
  float o[C::NO][4];
  uint32_t pa[C::BC / 16][4];
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < C::NO; ++j)
#pragma unroll
    for (int c = 0; c < 4; ++c) o[j][c] = 0.f;
#pragma unroll
  for (int j = 0; j < C::NS; ++j)
#pragma unroll
    for (int c = 0; c < 4; ++c) s[j][c] = 0.f;  // the first S wgmma ignores it (scale-d = 0)

  const uint32_t q_wg = s_q + wg * 64 * 128;
  // S = Q K^T on the tile in K slot t & 1 (issued, committed, not waited for).
  auto issue_qk = [&](int t) {
    const uint32_t kb = s_k + static_cast<uint32_t>(t & 1) * C::KV_SLOT;
    pin<C::NS>(s);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < C::HD / 16; ++kk) {
      const uint64_t da = smem_desc(q_wg + (kk / 4) * C::Q_HALF + (kk % 4) * 32, 16, 1024);
      const uint64_t db = smem_desc(kb + (kk / 4) * C::KV_HALF + (kk % 4) * 32, 16, 1024);
      wgmma_ss<C::BC>(s, da, db, kk > 0 ? 1 : 0);
    }
    wg_commit();
    pin<C::NS>(s);
  };
  // O += P V on the tile in V slot t & 1 (issued, committed, not waited for).
  auto issue_pv = [&](int t) {
    const uint32_t vb = s_v + static_cast<uint32_t>(t & 1) * C::KV_SLOT;
    pin<C::NO>(o);
    pin<C::BC / 16>(pa);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < C::BC / 16; ++kk)
      wgmma_rs<C::HD>(o, pa[kk], smem_desc(vb + kk * 16 * 128, C::KV_HALF, 1024), 1);
    wg_commit();
    pin<C::NO>(o);
    pin<C::BC / 16>(pa);
  };
  auto rescale_o = [&](const float (&alpha)[2]) {
#pragma unroll
    for (int j = 0; j < C::NO; ++j) {
      o[j][0] *= alpha[0];
      o[j][1] *= alpha[0];
      o[j][2] *= alpha[1];
      o[j][3] *= alpha[1];
    }
  };
  const int64_t tail = p.kv_rows - static_cast<int64_t>(nt - 1) * C::BC;  // keys in tile 0: 1 .. BC
  const float sl2 = p.sl2;

  if constexpr (!C::OVERLAP) {
    load_tile(k_src, s_k, 0);
    load_tile(v_src, s_v, 0);
    cp_async_commit();
    for (int t = 0; t < nt; ++t) {
      cp_async_wait<0>();  // tile t (and Q) landed for this thread
      fence_proxy_async();
      __syncthreads();     // ... for every thread; and every warpgroup is done with tile t-1's slots
      if (t + 1 < nt) {
        load_tile(k_src, s_k, t + 1);
        load_tile(v_src, s_v, t + 1);
      }
      cp_async_commit();
      issue_qk(t);
      wg_wait<0>();
      pin<C::NS>(s);
      if (t == 0 && tail < C::BC) mask_tail_wg<C>(s, static_cast<int>(tail), lane);
      float alpha[2];
      softmax_split<C>(s, m, l, sl2, alpha);
      rescale_o(alpha);
      to_p<C>(s, pa);
      issue_pv(t);
      wg_wait<0>();
      pin<C::NO>(o);
      pin<C::BC / 16>(pa);
    }
  } else {
    // Groups: {Q, K0}, {K1, V0}, then one per iteration j: {K(j+2), V(j+1)}.
    load_tile(k_src, s_k, 0);
    cp_async_commit();
    if (nt > 1) load_tile(k_src, s_k, 1);
    load_tile(v_src, s_v, 0);
    cp_async_commit();
    cp_async_wait<1>();
    fence_proxy_async();
    __syncthreads();
    issue_qk(0);
    wg_wait<0>();
    pin<C::NS>(s);
    if (tail < C::BC) mask_tail_wg<C>(s, static_cast<int>(tail), lane);
    {
      float alpha[2];
      softmax_split<C>(s, m, l, sl2, alpha);  // O is zero: no rescale
      to_p<C>(s, pa);
    }
    for (int j = 0; j < nt; ++j) {
      cp_async_wait<0>();  // K(j+1) and V(j) landed for this thread
      fence_proxy_async();
      __syncthreads();     // ... for every thread; every warpgroup is done with iteration j-1
      if (j + 2 < nt) load_tile(k_src, s_k, j + 2);  // slot of K(j), last read in iteration j-1
      if (j + 1 < nt) load_tile(v_src, s_v, j + 1);  // slot of V(j-1), last read in iteration j-1
      cp_async_commit();
      if (j + 1 < nt) {
        issue_qk(j + 1);
        issue_pv(j);
        wg_wait<1>();  // S(j+1) done; P(j) V(j) may still run
        pin<C::NS>(s);
        float alpha[2];
        softmax_split<C>(s, m, l, sl2, alpha);
        wg_wait<0>();  // P(j) V(j) done: O and pa are free
        pin<C::NO>(o);
        pin<C::BC / 16>(pa);
        rescale_o(alpha);
        to_p<C>(s, pa);
      } else {
        issue_pv(j);
        wg_wait<0>();
        pin<C::NO>(o);
        pin<C::BC / 16>(pa);
      }
    }
  }

  // ---- epilogue: every warpgroup is done with shared memory; stage O / l as bf16 rows, 16-byte stores
  __syncthreads();
  const int g = lane >> 2, t4 = lane & 3;
  const int wrow = wg * 64 + (warp & 3) * 16;  // this warp's first row in the CTA tile
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float lt = l[r];
    lt += __shfl_xor_sync(0xffffffffu, lt, 1);
    lt += __shfl_xor_sync(0xffffffffu, lt, 2);
    const float inv = __frcp_rn(lt);  // lt >= 1: the row max contributes exp2(0)
    const int row = wrow + g + 8 * r;  // row & 7 == g
#pragma unroll
    for (int j = 0; j < C::NO; ++j) {
      const uint32_t val = pack_bf16(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
      *reinterpret_cast<uint32_t*>(smem + row * C::ROW_BYTES + ((j ^ g) << 4) + t4 * 4) = val;
    }
  }
  __syncwarp();
  bf16* const out = p.o + static_cast<int64_t>(h) * C::HD;
#pragma unroll
  for (int it = 0; it < 16 * C::CPR / 32; ++it) {
    const int c = lane + it * 32;
    const int rl = c / C::CPR, ch = c % C::CPR;
    const int row = wrow + rl;
    const int64_t grow = q0 + row;
    if (grow < p.rows) {
      const uint4 val = *reinterpret_cast<const uint4*>(smem + row * C::ROW_BYTES + ((ch ^ (rl & 7)) << 4));
      *reinterpret_cast<uint4*>(out + grow * p.q_ld + ch * 8) = val;
    }
  }
#else
  // Host pass / non-sm_90a device pass: an empty kernel (reported unavailable at run time).
  static_assert(C::NS > 0 && C::NO > 0 && (C::OVERLAP || !C::OVERLAP), "");
#endif  // MOSAIC_FA_WGMMA
}

// ---------------------------------------------------------------------------------------------
// Variants and dispatch
// ---------------------------------------------------------------------------------------------

template <class C>
Params make_params(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, int heads,
                   int kv_heads, float scale, bf16* out) {
  Params p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.o = out;
  p.rows = rows;
  p.kv_rows = kv_rows;
  p.q_ld = static_cast<int64_t>(heads) * C::HD;
  p.kv_ld = static_cast<int64_t>(kv_heads) * C::HD;
  p.group = heads / kv_heads;
  const int64_t n_tiles = (kv_rows + C::BC - 1) / C::BC;
  CUDA_REQUIRE(n_tiles <= INT32_MAX, "flash_attention: kv_rows " + std::to_string(kv_rows) + " is too large");
  p.n_tiles = static_cast<int>(n_tiles);
  p.sl2 = scale * kLog2e;
  return p;
}

template <class C, auto Kernel>
void launch(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, int heads, int kv_heads,
            float scale, bf16* out, cudaStream_t s) {
  const Params p = make_params<C>(q, rows, k, v, kv_rows, heads, kv_heads, scale, out);
  const int64_t q_tiles = (rows + C::BR - 1) / C::BR;
  CUDA_REQUIRE(q_tiles <= INT32_MAX, "flash_attention: rows " + std::to_string(rows) + " is too large");
  // Per call (cheap host calls) rather than once: the attribute is per device.
  CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM_BYTES));
  CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  cudaSharedmemCarveoutMaxShared));
  // x = query tile (fastest), y = head: CTAs of one head, then of the next head of the same kv group,
  // are launched together and share the K/V stream through L2.
  const dim3 grid(static_cast<unsigned>(q_tiles), static_cast<unsigned>(heads));
  Kernel<<<grid, C::THREADS, C::SMEM_BYTES, s>>>(p);
  CUDA_CHECK_LAUNCH();
}

template <class C>
void launch_mma(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, int heads,
                int kv_heads, float scale, bf16* out, cudaStream_t s) {
  launch<C, flash_fwd_kernel<C>>(q, rows, k, v, kv_rows, heads, kv_heads, scale, out, s);
}
template <class C>
void launch_wg(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, int heads,
               int kv_heads, float scale, bf16* out, cudaStream_t s) {
  launch<C, flash_wgmma_kernel<C>>(q, rows, k, v, kv_rows, heads, kv_heads, scale, out, s);
}

// ---------------------------------------------------------------------------------------------
// Split-KV: few query rows over many keys (a cached step's block), or keys in two places (a
// sparse cache's kept rows and the block's fresh ones). The keys are cut into splits, one CTA
// per (query tile, head, split), so that a block of 32 rows still fills the GPU; each writes its
// normalised O and the log2 of its softmax sum, and split_combine merges them. Where the query
// tiles alone fill the SMs (a batch's cached step: 16 sequences' blocks) there is one split, and
// it writes O in bf16 itself.
// ---------------------------------------------------------------------------------------------

// out = sum_z w_z O_z / sum_z w_z with w_z = 2^(lse_z - max_z lse_z).
__global__ void split_combine_kernel(const float* __restrict__ o_part, const float* __restrict__ lse, int splits,
                                     int64_t rows, int heads, int hd, bf16* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const int h = blockIdx.y, c = threadIdx.x;
  const int64_t ld = static_cast<int64_t>(heads) * hd;
  float mx = -INFINITY;
  for (int z = 0; z < splits; ++z) mx = fmaxf(mx, lse[(static_cast<int64_t>(z) * heads + h) * rows + row]);
  if (mx == -INFINITY) mx = 0.f;  // no split saw a key (cannot happen with key 0 always seen): zeros
  float acc = 0.f, sum = 0.f;
  for (int z = 0; z < splits; ++z) {
    const float w = exp2f(lse[(static_cast<int64_t>(z) * heads + h) * rows + row] - mx);
    sum += w;
    acc = fmaf(w, o_part[(static_cast<int64_t>(z) * rows + row) * ld + h * hd + c], acc);
  }
  out[row * ld + h * hd + c] = __float2bfloat16(sum > 0.f ? acc / sum : 0.f);
}

//                  HD  warps MT  BC  Q_SMEM STAGES PIPE MINB
using Split128 = Cfg<128, 4, 1, 64, false, 2, false, 2>;
using Split64 = Cfg<64, 4, 1, 64, false, 2, false, 2>;
constexpr int kMaxSplits = 64;

int sm_count() {
  static thread_local int cached_dev = -1, cached = 0;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != cached_dev) {
    CUDA_CHECK(cudaDeviceGetAttribute(&cached, cudaDevAttrMultiProcessorCount, dev));
    cached_dev = dev;
  }
  return cached;
}

struct KvSrc {
  const bf16* k;
  const bf16* v;
  int64_t rows;
};

template <class C>
void launch_split(const bf16* q, int64_t rows, KvSrc a, KvSrc b, int heads, int kv_heads, float scale, bf16* out,
                  float* ws, size_t ws_bytes, int want, cudaStream_t s, int64_t block, const int32_t* positions,
                  int64_t pos0, const int32_t* key_lo, const int32_t* key_hi, int64_t key_span) {
  if (a.rows == 0) std::swap(a, b);
  int64_t tiles_a = (a.rows + C::BC - 1) / C::BC;
  const int64_t tiles_b = (b.rows + C::BC - 1) / C::BC;
  // Key ranges: a query tile's span covers at most two ranges (it may straddle two sequences).
  if (key_hi && key_span > 0) tiles_a = std::min(tiles_a, (2 * key_span + C::BC - 1) / C::BC + 1);
  const int64_t q_tiles = (rows + C::BR - 1) / C::BR;
  const int least = b.rows > 0 ? 2 : 1;
  if (want <= 0) {  // auto: as many splits as fill one wave of the SMs
    const int64_t ctas = q_tiles * heads;
    want = static_cast<int>(std::min<int64_t>(kMaxSplits, (sm_count() + ctas - 1) / ctas));
  }
  want = static_cast<int>(std::clamp<int64_t>(want, least, std::max<int64_t>(least, std::min<int64_t>(kMaxSplits, tiles_a + tiles_b))));
  // Splits per source in proportion to its tiles, then as few as cover it with `per` tiles each.
  int sa = want, sb = 0;
  if (b.rows > 0) {
    sa = static_cast<int>(std::clamp<int64_t>((want * tiles_a + (tiles_a + tiles_b) / 2) / (tiles_a + tiles_b), 1,
                                              want - 1));
    sb = want - sa;
  }
  const int per_a = static_cast<int>((tiles_a + sa - 1) / sa);
  sa = static_cast<int>((tiles_a + per_a - 1) / per_a);
  const int per_b = sb > 0 ? static_cast<int>((tiles_b + sb - 1) / sb) : 0;
  if (sb > 0) sb = static_cast<int>((tiles_b + per_b - 1) / per_b);
  const int splits = sa + sb;
  // One split writes O directly; more write partials, merged by split_combine. Query rows per
  // launch, so that the splits' partial outputs fit the workspace.
  const bool direct = splits == 1;
  const size_t row_bytes = static_cast<size_t>(splits) * heads * (C::HD + 1) * sizeof(float);
  int64_t chunk = direct ? rows : std::min<int64_t>(rows, static_cast<int64_t>(ws_bytes / row_bytes));
  CUDA_REQUIRE(chunk >= 1, "flash_attention_split: a " + std::to_string(ws_bytes) +
                               "-byte workspace holds no query row of " + std::to_string(splits) + " splits");
  if (chunk < rows && chunk >= C::BR) chunk = chunk / C::BR * C::BR;
  auto kernel = flash_fwd_kernel<C, true>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM_BYTES));
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  cudaSharedmemCarveoutMaxShared));
  const int64_t q_ld = static_cast<int64_t>(heads) * C::HD;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    Params p = make_params<C>(q + r0 * q_ld, n, a.k, a.v, a.rows, heads, kv_heads, scale, out + r0 * q_ld);
    p.k2 = b.k;
    p.v2 = b.v;
    p.kv_rows2 = b.rows;
    p.splits = sa;
    p.per = per_a;
    p.per2 = per_b;
    p.o_part = ws;
    p.lse = ws + static_cast<int64_t>(splits) * n * q_ld;
    p.block = block;
    p.positions = positions ? positions + r0 : nullptr;
    p.pos0 = pos0 + r0;
    p.key_lo = key_lo ? key_lo + r0 : nullptr;
    p.key_hi = key_hi ? key_hi + r0 : nullptr;
    p.direct = direct;
    const dim3 grid(static_cast<unsigned>((n + C::BR - 1) / C::BR), static_cast<unsigned>(heads),
                    static_cast<unsigned>(splits));
    kernel<<<grid, C::THREADS, C::SMEM_BYTES, s>>>(p);
    CUDA_CHECK_LAUNCH();
    if (direct) continue;
    split_combine_kernel<<<dim3(static_cast<unsigned>(n), static_cast<unsigned>(heads)), C::HD, 0, s>>>(
        p.o_part, p.lse, splits, n, heads, C::HD, p.o);
    CUDA_CHECK_LAUNCH();
  }
}

bool always() { return true; }
// The wgmma kernels have a body only when this file was compiled for sm_90a (e.g.
// -gencode=arch=compute_90a,code=sm_90a or CMAKE_CUDA_ARCHITECTURES=90a); a plain sm_90 build leaves
// them empty. An empty kernel needs a handful of registers, a real one holds 64+ accumulators.
template <class C>
bool wg_available() {
  cudaFuncAttributes a{};
  if (cudaFuncGetAttributes(&a, flash_wgmma_kernel<C>) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0 && a.numRegs >= 64;
}

using LaunchFn = void (*)(const bf16*, int64_t, const bf16*, const bf16*, int64_t, int, int, float, bf16*,
                          cudaStream_t);

struct Variant {
  const char* name;
  LaunchFn fn;
  bool (*available)();
};

//                      HD  warps MT  BC  Q_SMEM STAGES PIPE MINB
using H128_W4_M32_B64 = Cfg<128, 4, 2, 64, true, 2, false, 2>;
using H128_W4_M32_B32 = Cfg<128, 4, 2, 32, true, 2, false, 2>;
using H128_W8_B64 = Cfg<128, 8, 1, 64, false, 2, false, 1>;
using H128_W8_B64_PIPE = Cfg<128, 8, 1, 64, false, 3, true, 1>;
using H128_W8_B128 = Cfg<128, 8, 1, 128, false, 2, false, 1>;
using H64_W4_M32_B64 = Cfg<64, 4, 2, 64, false, 2, false, 2>;
using H64_W8_B64_PIPE = Cfg<64, 8, 1, 64, false, 3, true, 1>;
using H64_W8_B128 = Cfg<64, 8, 1, 128, false, 2, false, 1>;
//                         HD  NWG  BC  OVERLAP MINB
using WG128_2_B128_OV = WgCfg<128, 2, 128, true, 1>;
using WG128_2_B128 = WgCfg<128, 2, 128, false, 1>;
using WG128_1_B64_OV = WgCfg<128, 1, 64, true, 2>;
using WG64_2_B128_OV = WgCfg<64, 2, 128, true, 1>;
using WG64_1_B128_OV = WgCfg<64, 1, 128, true, 2>;

// In order of preference: the default is the first available entry.
constexpr Variant kVariants128[] = {
    {"wgmma hd128 2wg bc128 overlapped", launch_wg<WG128_2_B128_OV>, wg_available<WG128_2_B128_OV>},
    {"wgmma hd128 2wg bc128", launch_wg<WG128_2_B128>, wg_available<WG128_2_B128>},
    {"wgmma hd128 1wg bc64 overlapped (2 CTA/SM)", launch_wg<WG128_1_B64_OV>, wg_available<WG128_1_B64_OV>},
    {"mma hd128 w4 m32 bc64 q-smem s2 (FA2-like, 2 CTA/SM)", launch_mma<H128_W4_M32_B64>, always},
    {"mma hd128 w4 m32 bc32 q-smem s2 (2 CTA/SM)", launch_mma<H128_W4_M32_B32>, always},
    {"mma hd128 w8 m16 bc64 q-reg s2", launch_mma<H128_W8_B64>, always},
    {"mma hd128 w8 m16 bc64 q-reg s3 pipelined", launch_mma<H128_W8_B64_PIPE>, always},
    {"mma hd128 w8 m16 bc128 q-reg s2", launch_mma<H128_W8_B128>, always},
};
// hd64: one warpgroup and two CTAs per SM measured 382 TFLOP/s against 289 for two
// warpgroups (H100, 4096 x 4096, 32 heads; docs/notes/flash_attention.md).
constexpr Variant kVariants64[] = {
    {"wgmma hd64 1wg bc128 overlapped (2 CTA/SM)", launch_wg<WG64_1_B128_OV>, wg_available<WG64_1_B128_OV>},
    {"wgmma hd64 2wg bc128 overlapped", launch_wg<WG64_2_B128_OV>, wg_available<WG64_2_B128_OV>},
    {"mma hd64 w4 m32 bc64 q-reg s2 (2 CTA/SM)", launch_mma<H64_W4_M32_B64>, always},
    {"mma hd64 w8 m16 bc64 q-reg s3 pipelined", launch_mma<H64_W8_B64_PIPE>, always},
    {"mma hd64 w8 m16 bc128 q-reg s2", launch_mma<H64_W8_B128>, always},
};

template <size_t N>
constexpr int count_of(const Variant (&)[N]) {
  return static_cast<int>(N);
}

const Variant* variant_table(int hd, int* n) {
  if (hd == 128) {
    *n = count_of(kVariants128);
    return kVariants128;
  }
  if (hd == 64) {
    *n = count_of(kVariants64);
    return kVariants64;
  }
  *n = 0;
  return nullptr;
}

// Availability per (device, hd, variant), computed once per device: the first call happens outside
// any graph capture in practice, and the queries involved are capture-safe anyway.
bool variant_available(int hd, int i) {
  int n = 0;
  const Variant* t = variant_table(hd, &n);
  if (!t || i < 0 || i >= n) return false;
  return t[i].available();
}

int default_variant(int hd) {
  int n = 0;
  variant_table(hd, &n);
  static thread_local int cached_dev = -1;
  static thread_local int cached[2] = {-1, -1};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    dev = -2;
  }
  if (dev != cached_dev) {
    cached_dev = dev;
    cached[0] = cached[1] = -1;
  }
  int& c = cached[hd == 128 ? 1 : 0];
  if (c < 0) {
    c = n - 1;
    for (int i = 0; i < n; ++i)
      if (variant_available(hd, i)) {
        c = i;
        break;
      }
  }
  return c;
}

void check_args(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, int heads,
                int kv_heads, int hd, float scale, const bf16* out) {
  using std::to_string;
  CUDA_REQUIRE(hd == 64 || hd == 128, "flash_attention: head dim " + to_string(hd) +
                                          " is not supported (the CUDA kernel handles 64 and 128)");
  CUDA_REQUIRE(heads > 0 && kv_heads > 0 && heads % kv_heads == 0,
               "flash_attention: heads (" + to_string(heads) + ") must be a positive multiple of kv_heads (" +
                   to_string(kv_heads) + ")");
  CUDA_REQUIRE(heads <= 65535, "flash_attention: " + to_string(heads) + " heads exceed the grid limit of 65535");
  CUDA_REQUIRE(rows >= 0 && kv_rows >= 0,
               "flash_attention: negative rows (" + to_string(rows) + ") or kv_rows (" + to_string(kv_rows) + ")");
  CUDA_REQUIRE(std::isfinite(scale) && scale > 0.f,
               "flash_attention: scale must be positive and finite, got " + to_string(scale));
  auto aligned = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; };
  CUDA_REQUIRE(aligned(q) && aligned(k) && aligned(v) && aligned(out),
               std::string("flash_attention: q, k, v and out must be 16-byte aligned"));
}

}  // namespace

namespace detail {

int flash_attention_variants(int hd) {
  int n = 0;
  variant_table(hd, &n);
  return n;
}

const char* flash_attention_variant_name(int hd, int variant) {
  int n = 0;
  const Variant* t = variant_table(hd, &n);
  return t && variant >= 0 && variant < n ? t[variant].name : "?";
}

bool flash_attention_variant_available(int hd, int variant) { return variant_available(hd, variant); }

int flash_attention_default_variant(int hd) { return hd == 64 || hd == 128 ? default_variant(hd) : -1; }

// variant < 0: the default for hd.
void flash_attention_variant(int variant, const bf16* q, int64_t rows, const bf16* k, const bf16* v,
                             int64_t kv_rows, int heads, int kv_heads, int hd, float scale, bf16* out,
                             cudaStream_t s) {
  check_args(q, rows, k, v, kv_rows, heads, kv_heads, hd, scale, out);
  if (rows == 0) return;
  if (kv_rows == 0) {  // softmax over no keys: define the output as zeros
    CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(rows) * heads * hd * sizeof(bf16), s));
    return;
  }
  int n = 0;
  const Variant* t = variant_table(hd, &n);
  if (variant < 0) variant = default_variant(hd);
  CUDA_REQUIRE(variant < n, "flash_attention: variant " + std::to_string(variant) + " out of range (hd " +
                                std::to_string(hd) + " has " + std::to_string(n) + ")");
  CUDA_REQUIRE(t[variant].available(), std::string("flash_attention: variant '") + t[variant].name +
                                           "' is not available (needs an sm_90a build and an sm_90 device)");
  t[variant].fn(q, rows, k, v, kv_rows, heads, kv_heads, scale, out, s);
}

}  // namespace detail

void flash_attention(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, int heads,
                     int kv_heads, int hd, float scale, bf16* out, cudaStream_t s) {
  detail::flash_attention_variant(-1, q, rows, k, v, kv_rows, heads, kv_heads, hd, scale, out, s);
}

void flash_attention_split(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows,
                           const bf16* k2, const bf16* v2, int64_t kv_rows2, int heads, int kv_heads, int hd,
                           float scale, bf16* out, float* workspace, size_t workspace_bytes, cudaStream_t s,
                           int splits, int64_t block, const int32_t* positions, int64_t pos0,
                           const int32_t* key_lo, const int32_t* key_hi, int64_t key_span) {
  check_args(q, rows, k, v, kv_rows, heads, kv_heads, hd, scale, out);
  CUDA_REQUIRE(!key_hi || (key_lo && kv_rows2 == 0 && block == 0),
               "flash_attention_split: key ranges take key_lo and key_hi, one key source and no block mask");
  CUDA_REQUIRE(block == 0 || kv_rows > 0, "flash_attention_split: block-causal keys must start in the first source");
  CUDA_REQUIRE(kv_rows2 >= 0, "flash_attention_split: negative kv_rows2 (" + std::to_string(kv_rows2) + ")");
  CUDA_REQUIRE(kv_rows2 == 0 || ((reinterpret_cast<uintptr_t>(k2) | reinterpret_cast<uintptr_t>(v2)) & 15u) == 0,
               std::string("flash_attention_split: k2 and v2 must be 16-byte aligned"));
  CUDA_REQUIRE(workspace != nullptr && (reinterpret_cast<uintptr_t>(workspace) & 15u) == 0,
               std::string("flash_attention_split: the workspace must be 16-byte aligned device memory"));
  if (rows == 0) return;
  if (kv_rows + kv_rows2 == 0) {  // softmax over no keys: define the output as zeros
    CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(rows) * heads * hd * sizeof(bf16), s));
    return;
  }
  const KvSrc a{k, v, kv_rows}, b{k2, v2, kv_rows2};
  if (hd == 128)
    launch_split<Split128>(q, rows, a, b, heads, kv_heads, scale, out, workspace, workspace_bytes, splits, s, block,
                           positions, pos0, key_lo, key_hi, key_span);
  else
    launch_split<Split64>(q, rows, a, b, heads, kv_heads, scale, out, workspace, workspace_bytes, splits, s, block,
                          positions, pos0, key_lo, key_hi, key_span);
}

}  // namespace mosaic::cuda
