// The routed experts of one MoE layer as two grouped GEMMs, everything on the device (no host
// round trip, so a step never waits for the routing):
//   1. count the (row, expert) pairs per expert, scan the counts into each expert's first sorted
//      position and first 64-row tile, and give each pair its sorted position (slot);
//   2. gate/up GEMM: for each tile of an expert's sorted rows, gather the rows from h, multiply
//      by the expert's gate and up weights (interleaved so that one thread holds gate and up of
//      the same column) and write silu(gate) * up in bf16;
//   3. down GEMM: the same tiles times the expert's down weights, bf16 rows at the slots;
//   4. combine: x[r] += sum_j w[r, j] * y[slot(r, j)], in fp32, rounded once.
// A CTA computes a 64 x 128 tile (mma.sync m16n8k16, fp32 accumulators, 3-stage cp.async ring of
// 64-column K slices, XOR-swizzled rows as in flash_attention.cu). Grid x covers the most tiles
// the pairs can need (pairs / 64 + experts); CTAs past the real count return at once. Every
// output row depends only on its own input row and its expert's weights, so the result does not
// depend on the order the pairs land in within an expert.
#include <algorithm>
#include <mutex>
#include <set>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/ptx.cuh"

namespace mosaic::cuda {

namespace {

using namespace ptx;

constexpr int BM = 64, BN = 128, BK = 64, THREADS = 128, STAGES = 3;
constexpr int ROW_BYTES = BK * 2;
constexpr int A_BYTES = BM * ROW_BYTES;
constexpr int B_BYTES = BN * ROW_BYTES;
constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 1024;  // + 1024: the base is rounded up for the swizzle
constexpr int MT = 2, NT = 8;                              // per warp: 32 rows x 64 columns

struct GemmArgs {
  const bf16* a;            // GATHER: h [rows, K], row perm[pos]; else the sorted rows [pairs, K]
  const int32_t* perm;      // sorted position -> row of h
  const bf16* const* w0;    // per expert [N, K] (SWIGLU: gate [N, K])
  const bf16* const* w1;    // SWIGLU: up [N, K]
  const int32_t* offsets;   // [E + 1] first sorted position of each expert
  const int32_t* tiles;     // [E + 1] first tile of each expert
  int experts;
  int64_t K, N;             // N: output columns
  bf16* out;                // [pairs, N], sorted positions
};

template <bool GATHER, bool SWIGLU>
__global__ void __launch_bounds__(THREADS, 2) grouped_gemm_kernel(const GemmArgs p) {
  const int tile = blockIdx.x;
  if (tile >= p.tiles[p.experts]) return;
  // The expert: the last e with tiles[e] <= tile (empty experts share their successor's start).
  int lo = 0, hi = p.experts - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (p.tiles[mid] <= tile) lo = mid;
    else hi = mid - 1;
  }
  const int e = lo;
  const int64_t m0 = p.offsets[e] + static_cast<int64_t>(tile - p.tiles[e]) * BM;
  const int m_valid = static_cast<int>(min(static_cast<int64_t>(BM), p.offsets[e + 1] - m0));
  // SWIGLU: B rows 2j / 2j+1 are gate / up of output column n0 + j.
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * (SWIGLU ? BN / 2 : BN);

  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t s0 = raw + ((1024u - (raw & 1023u)) & 1023u);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // Loads: thread -> row ld_row + 16 it, 16-byte chunk ld_ch of the 64-column slice.
  const int ld_row = tid >> 3, ld_ch = tid & 7;
  const uint32_t ld_off = ld_row * ROW_BYTES + ((ld_ch ^ (ld_row & 7)) << 4);
  const bf16* a_src[BM / 16];
  bool a_ok[BM / 16];
#pragma unroll
  for (int it = 0; it < BM / 16; ++it) {
    const int r = ld_row + 16 * it;
    a_ok[it] = r < m_valid;
    const int64_t src_row = !a_ok[it] ? 0 : GATHER ? p.perm[m0 + r] : m0 + r;
    a_src[it] = p.a + src_row * p.K;
  }
  const bf16* b_src[BN / 16];
  bool b_ok[BN / 16];
  const bf16* w0 = p.w0[e];
  const bf16* w1 = SWIGLU ? p.w1[e] : nullptr;
#pragma unroll
  for (int it = 0; it < BN / 16; ++it) {
    const int r = ld_row + 16 * it;
    const int64_t n = SWIGLU ? n0 + (r >> 1) : n0 + r;
    b_ok[it] = n < p.N;
    const bf16* w = SWIGLU && (r & 1) ? w1 : w0;
    b_src[it] = w + (b_ok[it] ? n : 0) * p.K;
  }
  auto load_stage = [&](int st, int kt) {
    const uint32_t sa = s0 + st * STAGE_BYTES, sb = sa + A_BYTES;
    const int64_t col = static_cast<int64_t>(kt) * BK + ld_ch * 8;
    const bool k_ok = col < p.K;
    const int64_t c = k_ok ? col : 0;
#pragma unroll
    for (int it = 0; it < BM / 16; ++it) cp_async_16(sa + ld_off + it * 16 * ROW_BYTES, a_src[it] + c, a_ok[it] && k_ok);
#pragma unroll
    for (int it = 0; it < BN / 16; ++it) cp_async_16(sb + ld_off + it * 16 * ROW_BYTES, b_src[it] + c, b_ok[it] && k_ok);
  };

  // ldmatrix lanes (see flash_attention.cu): A as its Q, B as its K.
  const int warp_m = warp & 1, warp_n = warp >> 1;
  const uint32_t a_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * ROW_BYTES + ((((lane >> 4) & 1) ^ (lane & 7)) << 4);
  const uint32_t b_off = ((lane & 7) + ((lane >> 4) & 1) * 8) * ROW_BYTES + ((((lane >> 3) & 1) ^ (lane & 7)) << 4);

  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[mt][nt][c] = 0.f;

  const int KT = static_cast<int>((p.K + BK - 1) / BK);
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < KT) load_stage(st, st);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // slice kt landed for all; everyone is done with slice kt - 1's slot
    if (kt + STAGES - 1 < KT) load_stage((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
    cp_async_commit();
    const uint32_t sa = s0 + (kt % STAGES) * STAGE_BYTES, sb = sa + A_BYTES;
    const uint32_t a_lane = sa + warp_m * 32 * ROW_BYTES + a_off;
    const uint32_t b_lane = sb + warp_n * 64 * ROW_BYTES + b_off;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) ldsm_x4(a[mt], (a_lane ^ (kk * 32)) + mt * 16 * ROW_BYTES);
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t b[4];
        ldsm_x4(b, (b_lane ^ (kk * 32)) + np * 16 * ROW_BYTES);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(acc[mt][2 * np], a[mt], b[0], b[1]);
          mma_bf16(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
    }
  }

  // Epilogue: thread holds rows g, g + 8 and columns 2 t4, 2 t4 + 1 of each m16 x n8 tile.
  const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = warp_m * 32 + mt * 16 + g + 8 * half;
      if (r >= m_valid) continue;
      bf16* out_row = p.out + (m0 + r) * p.N;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const float c0 = acc[mt][nt][2 * half], c1 = acc[mt][nt][2 * half + 1];
        const int col = warp_n * 64 + nt * 8 + t4 * 2;
        if constexpr (SWIGLU) {
          const int64_t n = n0 + col / 2;
          if (n < p.N) out_row[n] = __float2bfloat16(c0 / (1.0f + __expf(-c0)) * c1);
        } else {
          const int64_t n = n0 + col;
          if (n < p.N)  // N is even: the pair is in range together
            *reinterpret_cast<__nv_bfloat162*>(out_row + n) = __floats2bfloat162_rn(c0, c1);
        }
      }
    }
}

// counts[e] = pairs routed to e (ids out of range, -1 for a pair another part runs, are dropped).
__global__ void count_kernel(const int32_t* __restrict__ ids, int64_t pairs, int experts, int32_t* counts) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < pairs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int e = ids[i];
    if (e >= 0 && e < experts) atomicAdd(counts + e, 1);
  }
}

// One thread: the experts' first positions and first tiles (exclusive scans), the cursors.
__global__ void scan_kernel(const int32_t* counts, int experts, int32_t* offsets, int32_t* tiles, int32_t* cursor) {
  int32_t pos = 0, tile = 0;
  for (int e = 0; e < experts; ++e) {
    offsets[e] = cursor[e] = pos;
    tiles[e] = tile;
    pos += counts[e];
    tile += (counts[e] + BM - 1) / BM;
  }
  offsets[experts] = pos;
  tiles[experts] = tile;
}

// Pair i = (row i / k, its j-th expert) gets a sorted position in its expert's range.
__global__ void slot_kernel(const int32_t* __restrict__ ids, int64_t pairs, int k, int experts, int32_t* cursor,
                            int32_t* __restrict__ perm, int32_t* __restrict__ slot) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < pairs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int e = ids[i];
    if (e < 0 || e >= experts) {  // a pair another part runs (an offloaded layer's CPU experts)
      slot[i] = -1;
      continue;
    }
    const int32_t pos = atomicAdd(cursor + e, 1);
    perm[pos] = static_cast<int32_t>(i / k);
    slot[i] = pos;
  }
}

// One block per row: x[r] += sum_j w[r, j] * y[slot[r k + j]].
__global__ void combine_kernel(const bf16* __restrict__ y, int64_t d, const int32_t* __restrict__ slot,
                               const float* __restrict__ w, int k, bf16* __restrict__ x) {
  const int64_t r = blockIdx.x;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < k; ++j) {
      const int32_t s = slot[r * k + j];
      if (s >= 0) acc = fmaf(w[r * k + j], __bfloat162float(y[static_cast<int64_t>(s) * d + c]), acc);
    }
    x[r * d + c] = __float2bfloat16(__bfloat162float(x[r * d + c]) + acc);
  }
}

size_t align_up(size_t n) { return (n + 255) & ~size_t{255}; }

template <bool GATHER, bool SWIGLU>
void launch_gemm(const GemmArgs& a, int64_t pairs, cudaStream_t s) {
  // The shared-memory limit is an attribute per device (ranks of a sharded step run on several).
  static std::mutex mu;
  static std::set<int> configured;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  {
    const std::lock_guard<std::mutex> lock(mu);
    if (configured.insert(dev).second)
      CUDA_CHECK(cudaFuncSetAttribute(grouped_gemm_kernel<GATHER, SWIGLU>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      SMEM_BYTES));
  }
  const int64_t max_tiles = (pairs + BM - 1) / BM + a.experts;
  const int64_t col_tiles = (a.N + (SWIGLU ? BN / 2 : BN) - 1) / (SWIGLU ? BN / 2 : BN);
  CUDA_REQUIRE(max_tiles <= 0x7fffffff && col_tiles <= 65535, "moe_experts_grouped: grid too large");
  grouped_gemm_kernel<GATHER, SWIGLU>
      <<<dim3(static_cast<unsigned>(max_tiles), static_cast<unsigned>(col_tiles)), THREADS, SMEM_BYTES, s>>>(a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

bool moe_grouped_supported(int64_t d, int64_t ffn, int experts) {
  return d % 8 == 0 && ffn % 8 == 0 && experts > 0 && experts <= kMoeMaxExperts;
}

size_t moe_grouped_workspace_bytes(int64_t rows, int64_t d, int64_t ffn, int top_k) {
  const size_t pairs = static_cast<size_t>(rows) * top_k;
  return 2 * align_up(pairs * 4) + align_up(pairs * ffn * 2) + align_up(pairs * d * 2);
}

void moe_experts_grouped(const bf16* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights, int top_k,
                         int64_t ffn, int experts, const bf16* const* tables, bf16* x, void* workspace,
                         int32_t* meta, cudaStream_t s) {
  CUDA_REQUIRE(moe_grouped_supported(d, ffn, experts),
               "moe_experts_grouped: d " + std::to_string(d) + ", ffn " + std::to_string(ffn) + ", " +
                   std::to_string(experts) + " experts are not supported");
  if (rows == 0) return;
  const int64_t pairs = rows * top_k;
  CUDA_REQUIRE(pairs <= 0x7fffffff, "moe_experts_grouped: too many (row, expert) pairs");
  int32_t* counts = meta;
  int32_t* offsets = counts + (experts + 1);
  int32_t* tiles = offsets + (experts + 1);
  int32_t* cursor = tiles + (experts + 1);
  auto* base = static_cast<std::byte*>(workspace);
  auto* slot = reinterpret_cast<int32_t*>(base);
  auto* perm = reinterpret_cast<int32_t*>(base + align_up(pairs * 4));
  auto* act = reinterpret_cast<bf16*>(base + 2 * align_up(pairs * 4));
  auto* y = reinterpret_cast<bf16*>(base + 2 * align_up(pairs * 4) + align_up(static_cast<size_t>(pairs) * ffn * 2));

  CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(int32_t) * experts, s));
  const unsigned blocks = grid_for(pairs, 256);
  count_kernel<<<blocks, 256, 0, s>>>(ids, pairs, experts, counts);
  CUDA_CHECK_LAUNCH();
  scan_kernel<<<1, 1, 0, s>>>(counts, experts, offsets, tiles, cursor);
  CUDA_CHECK_LAUNCH();
  slot_kernel<<<blocks, 256, 0, s>>>(ids, pairs, top_k, experts, cursor, perm, slot);
  CUDA_CHECK_LAUNCH();

  GemmArgs up{h, perm, tables, tables + experts, offsets, tiles, experts, d, ffn, act};
  launch_gemm<true, true>(up, pairs, s);
  GemmArgs down{act, nullptr, tables + 2 * experts, nullptr, offsets, tiles, experts, ffn, d, y};
  launch_gemm<false, false>(down, pairs, s);
  combine_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(y, d, slot, weights, top_k, x);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mosaic::cuda
