// The CPU backend: float32 activations and weights in host memory, kernels from kernels.h.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "memory/host_arena.h"
#include "offload/cpu_experts.h"

namespace mosaic {

namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend() : traits_(cpu_traits()) {
    // OpenMP drives the parallelism (see linear.cpp); OpenBLAS runs inside its threads.
    openblas_set_num_threads(1);
  }
  const BackendTraits& traits() const override { return traits_; }

  void reserve_arena(size_t bytes, size_t keep) override { arena_.reserve(bytes, keep); }
  std::byte* arena() override { return arena_.data(); }
  size_t arena_mapped_bytes() const override { return arena_.capacity(); }

  const void* upload_weight(const io::TensorInfo& t) override {
    auto buf = std::make_unique<float[]>(static_cast<size_t>(t.numel()));
    to_f32(t.dtype, t.data, buf.get(), static_cast<size_t>(t.numel()));
    weight_bytes_ += static_cast<size_t>(t.numel()) * 4;
    weights_.push_back(std::move(buf));
    return weights_.back().get();
  }
  size_t weight_bytes() const override { return weight_bytes_; }
  double host_to_device_bytes_per_s() override {
    const size_t n = size_t{64} << 20;
    std::vector<std::byte> src(n, std::byte{1}), dst(n);
    double best = 1e30;
    for (int r = 0; r < 3; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      std::memcpy(dst.data(), src.data(), n);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return static_cast<double>(n) / best;
  }
  void* alloc_weight(size_t bytes) override {
    weights_.push_back(std::make_unique<float[]>((bytes + 3) / 4));
    weight_bytes_ += bytes;
    return weights_.back().get();
  }
  size_t weight_elem_size() const override { return 4; }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void synchronize() override {}

  size_t free_memory() const override {
    // MemAvailable: what the kernel could still hand us without swapping.
    std::ifstream f("/proc/meminfo");
    std::string key;
    size_t kb = 0;
    std::string unit;
    while (f >> key >> kb >> unit)
      if (key == "MemAvailable:") return kb * 1024;
    return size_t{8} << 30;
  }
  size_t peak_device_bytes() const override { return weight_bytes_ + arena_.capacity(); }

  void embed(const int32_t* ids, int64_t rows, const void* table, int64_t d, void* out) override {
    cpu::embed(ids, rows, f(table), d, f(out));
  }
  void rms_norm(const void* x, int64_t rows, int64_t d, const void* w, float eps, void* y) override {
    cpu::rms_norm(f(x), rows, d, f(w), eps, f(y));
  }
  void matmul(const void* a, int64_t rows, int64_t k, const void* w, const void* bias, int64_t n, void* c,
              ElemType, bool accumulate) override {
    cpu::matmul(f(a), rows, k, f(w), f(bias), n, f(c), accumulate);  // activations are F32 here anyway
  }
  void rope(void* x, int64_t rows, int heads, int hd, int rot, int64_t pos0, double theta,
            const int32_t* positions) override {
    auto key = std::make_pair(theta, rot);
    auto it = inv_freq_.find(key);
    if (it == inv_freq_.end()) it = inv_freq_.emplace(key, rope_inv_freq(theta, rot)).first;
    cpu::rope(f(x), rows, heads, hd, pos0, it->second.data(), positions, rot);
  }
  void attention(const void* q, int64_t rows, KvRows kv, KvRows more, int heads, int kv_heads, int hd, float scale,
                 void* out, void* workspace, const AttentionMask& mask) override {
    cpu::attention(f(q), rows, kv, more, heads, kv_heads, hd, scale, f(out), f(workspace), mask);
  }
  void swiglu(void* g, const void* u, int64_t n) override { cpu::swiglu(f(g), f(u), n); }
  void gather_rows(const void* x, int64_t d, const int32_t* idx, int64_t rows, void* out) override {
    cpu::gather_rows(f(x), d, idx, rows, f(out));
  }
  void scatter_rows(const void* x, int64_t d, const int32_t* idx, int64_t rows, void* out) override {
    cpu::scatter_rows(f(x), d, idx, rows, f(out));
  }
  void copy_columns(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                    int64_t rows) override {
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(static_cast<std::byte*>(dst) + static_cast<size_t>(i) * dst_pitch,
                  static_cast<const std::byte*>(src) + static_cast<size_t>(i) * src_pitch, width);
  }
  void cache_select(const void* q_block, int64_t block_rows, const void* k, const void* v, const int32_t* outside,
                    int64_t n, int heads, int kv_heads, int hd, int kernel, int64_t keep, float* scores,
                    int32_t* kept, void* k_cache, void* v_cache) override {
    cpu::cache_select(f(q_block), block_rows, f(k), f(v), outside, n, heads, kv_heads, hd, kernel, keep, scores, kept,
                      f(k_cache), f(v_cache));
  }
  void moe_route(const void* h, int64_t rows, int64_t d, const void* gate, const void* bias, const MoeRouting& r,
                 int32_t* ids, float* weights, float* logits) override {
    cpu::moe_route(f(h), rows, d, f(gate), f(bias), r, ids, weights, logits);
  }
  void moe_experts(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights, int top_k,
                   int64_t ffn, const std::vector<const void*>& experts, void* x, void* workspace,
                   const uint8_t* only) override {
    cpu::moe_experts(f(h), rows, d, ids, weights, top_k, ffn, experts, f(x), f(workspace), only);
  }
  // The simulated device: the resident experts run from their slots, the others from their host
  // copies with the offload's CPU kernel; both on this CPU.
  void moe_experts_offloaded(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights,
                             int top_k, int64_t ffn, const OffloadedExperts& o, void* x, void* workspace) override {
    if (rows == 0) return;
    // Copies behind land before the layer's next step reads them: at once here.
    for (const std::vector<int32_t>* list : {o.copy_in, o.copy_behind})
      for (int32_t e : *list)
        for (int j = 0; j < 3; ++j)
          std::memcpy(const_cast<void*>((*o.device)[3 * e + j]), (*o.host)[3 * e + j],
                      static_cast<size_t>(d * ffn) * sizeof(float));
    cpu::moe_experts(f(h), rows, d, ids, weights, top_k, ffn, *o.device, f(x), f(workspace), o.on_gpu);
    cpu_part_.resize(static_cast<size_t>(rows * d));
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t pairs = offload::cpu_experts(h, rows, d, o.host_ids, o.host_weights, top_k, ffn, *o.host, false,
                                               o.on_gpu, cpu_part_.data());
    if (pairs == 0) return;
    if (o.cpu_seconds) *o.cpu_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    float* xf = f(x);
    for (size_t i = 0; i < cpu_part_.size(); ++i) xf[i] += cpu_part_[i];
  }
  void cfg_combine(float* cond, const float* uncond, int64_t n, float scale) override {
    cpu::cfg_combine(cond, uncond, n, scale);
  }
  void sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                   int32_t* token, float* conf) override {
    cpu::sample_rows(logits, rows, vocab, pos, p, token, conf);
  }
  void rank_rows(const float* conf, int64_t n, int32_t* order) override { cpu::rank_rows(conf, n, order); }

 private:
  static float* f(void* p) { return static_cast<float*>(p); }
  static const float* f(const void* p) { return static_cast<const float*>(p); }

  BackendTraits traits_;
  HostArena arena_;
  std::vector<std::unique_ptr<float[]>> weights_;
  size_t weight_bytes_ = 0;
  std::vector<float> cpu_part_;
  std::map<std::pair<double, int>, std::vector<float>> inv_freq_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace mosaic
