// Probe: cuBLASLt's first heuristic answer against the fastest of all its answers, and the
// split-KV attention kernel's configurations on a batched cached step's shapes (n sequences of
// 32 query rows, each over its own keys through per-query key ranges), at LLaDA-8B's sizes.
// It measures the choices the engine makes in lt_matmul.cpp and flash_attention.cu; it is not
// part of the build (it includes flash_attention.cu to reach its configurations).
//
//   cmake --build build-gpu --target mosaic_lib   # tools/bench/make_gpu_bundle.sh does this
//   nvcc -O2 -std=c++20 -arch=sm_90a -Isrc tools/bench/kernel_probe.cu build-gpu/src/libmosaic_lib.a \
//       -lcublasLt -lcudart -lfmt -o kernel_probe && ./kernel_probe
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "backend/cuda/flash_attention.cu"  // the split kernel's configurations

#define CK(x) do { auto e_ = (x); if (e_ != cudaSuccess) { printf("cuda %s at %d\n", cudaGetErrorString(e_), __LINE__); exit(1);} } while (0)
#define LK(x) do { auto e_ = (x); if (e_ != CUBLAS_STATUS_SUCCESS) { printf("lt %d at %d\n", (int)e_, __LINE__); exit(1);} } while (0)

using bf16 = __nv_bfloat16;

template <class F>
float time_ms(F f, cudaStream_t s, int reps = 20) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> t;
  for (int r = 0; r < 5; ++r) {
    cudaEventRecord(a, s);
    for (int i = 0; i < reps; ++i) f();
    cudaEventRecord(b, s);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms / reps);
  }
  std::sort(t.begin(), t.end());
  return t[2];
}

__global__ void fill(bf16* p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    p[i] = __float2bfloat16(((h & 0xffff) / 65536.f - 0.5f) * 0.2f);
  }
}

int main() {
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  const size_t big = size_t{8192} * 24576;
  bf16 *A, *W, *C;
  CK(cudaMalloc(&A, big * 2));
  CK(cudaMalloc(&W, size_t{24576} * 12288 * 2));
  CK(cudaMalloc(&C, size_t{8192} * 126464 * 4));
  fill<<<1024, 256, 0, s>>>(A, big, 1);
  fill<<<1024, 256, 0, s>>>(W, size_t{24576} * 12288, 2);
  void* ws;
  const size_t ws_bytes = size_t{32} << 20;
  CK(cudaMalloc(&ws, ws_bytes));
  cublasLtHandle_t lt;
  LK(cublasLtCreate(&lt));
  struct Shape { long rows, k, n; bool f32out; };
  std::vector<Shape> shapes;
  for (long rows : {512L, 8192L})
    for (auto kn : std::vector<std::pair<long, long>>{{4096, 4096}, {4096, 12288}, {12288, 4096}, {4096, 24576}})
      shapes.push_back({rows, kn.first, kn.second, false});
  shapes.push_back({512, 4096, 126464, true});
  shapes.push_back({32, 4096, 126464, true});
  printf("%6s %6s %6s | %9s %8s | %9s %8s %4s %5s\n", "rows", "k", "n", "heur0 us", "TFLOP/s", "best us", "TFLOP/s",
         "idx", "of");
  for (auto sh : shapes) {
    cublasLtMatmulDesc_t desc;
    LK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    LK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    cublasLtMatrixLayout_t lw, la, lc;
    LK(cublasLtMatrixLayoutCreate(&lw, CUDA_R_16BF, sh.k, sh.n, sh.k));
    LK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, sh.k, sh.rows, sh.k));
    LK(cublasLtMatrixLayoutCreate(&lc, sh.f32out ? CUDA_R_32F : CUDA_R_16BF, sh.n, sh.rows, sh.n));
    cublasLtMatmulPreference_t pref;
    LK(cublasLtMatmulPreferenceCreate(&pref));
    LK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes)));
    cublasLtMatmulHeuristicResult_t res[32];
    int found = 0;
    LK(cublasLtMatmulAlgoGetHeuristic(lt, desc, lw, la, lc, lc, pref, 32, res, &found));
    const float alpha = 1, beta = 0;
    float t0 = 0, best = 1e9, best8 = 1e9;
    int bi = -1, bi8 = -1;
    for (int i = 0; i < found; ++i) {
      if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
      auto run = [&] {
        cublasLtMatmul(lt, desc, &alpha, W, lw, A, la, &beta, C, lc, C, lc, &res[i].algo, ws, ws_bytes, s);
      };
      const float t = time_ms(run, s);
      if (i == 0) t0 = t;
      if (t < best) best = t, bi = i;
      if (i < 8 && t < best8) best8 = t, bi8 = i;
    }
    printf("   first 8: best %d at %.1f us\n", bi8, best8 * 1e3);
    const double fl = 2.0 * sh.rows * sh.k * sh.n;
    printf("%6ld %6ld %6ld | %9.1f %8.1f | %9.1f %8.1f %4d %5d\n", sh.rows, sh.k, sh.n, t0 * 1e3, fl / t0 / 1e9,
           best * 1e3, fl / best / 1e9, bi, found);
    fflush(stdout);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(lw);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
  }

  // Attention: n sequences of `q_rows` queries over `keys` keys each, packed, per split config.
  using namespace mosaic::cuda;
  const int heads = 32, hd = 128;
  float* aws;
  const size_t aws_bytes = size_t{64} << 20;
  CK(cudaMalloc(&aws, aws_bytes));
  bf16 *Q, *K, *V, *O;
  const size_t qmax = size_t{16} * 512 * heads * hd, kmax = size_t{16} * 2048 * heads * hd;
  CK(cudaMalloc(&Q, qmax * 2));
  CK(cudaMalloc(&K, kmax * 2));
  CK(cudaMalloc(&V, kmax * 2));
  CK(cudaMalloc(&O, qmax * 2));
  fill<<<1024, 256, 0, s>>>(Q, qmax, 3);
  fill<<<1024, 256, 0, s>>>(K, kmax, 4);
  fill<<<1024, 256, 0, s>>>(V, kmax, 5);
  int32_t *lo, *hi;
  CK(cudaMalloc(&lo, 16 * 512 * 4));
  CK(cudaMalloc(&hi, 16 * 512 * 4));
  const float scale = 0.08838834764831845f;
  using SA = Cfg<128, 4, 1, 64, false, 2, false, 2>;
  using B = Cfg<128, 4, 1, 64, false, 3, false, 2>;
  using C3 = Cfg<128, 4, 1, 64, false, 3, true, 2>;
  using E = Cfg<128, 4, 1, 32, false, 4, false, 2>;
  using F = Cfg<128, 4, 1, 64, true, 3, false, 2>;
  printf("\nattention (heads 32, hd 128), us: A s2 | B s3 | C s3 pipe | E bc32 s4 | F qsmem s3 | kv MB\n");
  for (int keys : {512, 2048})
    for (int n : {1, 4, 16}) {
      const int q_rows = 32;
      std::vector<int32_t> hlo, hhi;
      for (int i = 0; i < n; ++i)
        for (int r = 0; r < q_rows; ++r) hlo.push_back(i * keys), hhi.push_back((i + 1) * keys);
      CK(cudaMemcpy(lo, hlo.data(), hlo.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(hi, hhi.data(), hhi.size() * 4, cudaMemcpyHostToDevice));
      const long rows = long(n) * q_rows, kv = long(n) * keys;
      const KvSrc a{K, V, kv}, b{nullptr, nullptr, 0};
      auto t = [&](auto cfg) {
        using Cf = decltype(cfg);
        return time_ms([&] {
          launch_split<Cf>(Q, rows, a, b, heads, heads, scale, O, aws, aws_bytes, 0, s, 0, nullptr, 0, lo, hi, keys);
        }, s);
      };
      const float ta = t(SA{}), tb = t(B{}), tc = t(C3{}), te = t(E{}), tf = t(F{});
      printf("%3d x %3d rows x %5d keys | %7.1f %7.1f %7.1f %7.1f %7.1f | %7.1f\n", n, q_rows, keys, ta * 1e3,
             tb * 1e3, tc * 1e3, te * 1e3, tf * 1e3, kv * heads * hd * 4 / 1e6);
      fflush(stdout);
    }
  CK(cudaGetLastError());
  return 0;
}
