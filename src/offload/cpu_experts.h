#pragma once
// The CPU's share of an offloaded MoE layer: the routed experts that have no GPU slot, run on
// the host from their master copies, for the rows routed to them. Weights and inputs are bf16
// (the CUDA backend's types) or fp32 (the CPU backend, cuda-fp32); accumulation is fp32. The
// result goes to a separate buffer the engine then adds to the residual stream.
#include <cstdint>
#include <vector>

namespace mosaic::offload {

// y [rows, d] (fp32; overwritten) = for each row r, the sum over its pairs j whose expert
// e = ids[r, j] is not on the GPU (!on_gpu[e]) of w[r, j] * down(silu(gate(h[r])) * up(h[r]));
// host[3e .. 3e+2]: expert e's gate and up [ffn, d] and down [d, ffn]. bf16: h and the weights
// are bf16 bits, else fp32. Runs on every OpenMP thread (experts of few rows split into pieces
// of output rows); the result does not depend on the thread count. Returns the pairs it ran.
int64_t cpu_experts(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* w, int top_k,
                    int64_t ffn, const std::vector<const void*>& host, bool bf16, const uint8_t* on_gpu, float* y);

// Tests: off runs the portable few-row kernel even where AVX-512 is there.
void cpu_experts_use_simd(bool on);

}  // namespace mosaic::offload
