// The CUDA backend: bf16 weights in their own virtual-memory mapping, the step's arena in
// another that grows and shrinks with the plan, cuBLASLt for products, cuDNN's fused
// attention (or mosaic's flash kernel) for attention. Nothing is cudaMalloc'd during a step.
// `cuda-fp32` is the same backend with fp32 weights, activations and math throughout: slow,
// for verifying GPU runs token for token against the golden fixtures.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/lt_matmul.h"
#include "backend/cuda/offload_runner.h"
#include "core/dtype.h"
#include "io/safetensors.h"
#include "memory/cuda/vmm_region.h"
#include "plan/offsets.h"
#ifdef MOSAIC_CUDNN
#include "backend/cuda/cudnn_attention.h"
#endif

namespace mosaic {

namespace {

constexpr size_t kStagingBytes = size_t{64} << 20;     // per buffer, two buffers
constexpr size_t kBlasWorkspace = size_t{32} << 20;
// Scratch of one attention call: cuDNN's workspace, or the split kernel's partial outputs.
constexpr size_t kAttnWorkspace = size_t{64} << 20;
// MoE: each layer's expert pointer table (3 per expert; LLaDA2.0-flash needs 32 x 768), and the
// grouped kernels' per-expert counters.
constexpr size_t kMoeTablePointers = size_t{1} << 16;
constexpr size_t kMoeMetaInts = 4 * (cuda::kMoeMaxExperts + 1);
constexpr int kMaxRopeTables = 16;
constexpr int kMaxRopeHalf = 512;

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, bool f32) : traits_(f32 ? cuda_fp32_traits() : cuda_traits()), device_(device), f32_(f32) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    MOSAIC_CHECK(e == cudaSuccess && count > device,
                 "no usable CUDA device {} ({}); run with --backend cpu", device,
                 e == cudaSuccess ? "none found" : cudaGetErrorString(e));
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaFree(nullptr));  // creates the primary context the driver API calls use
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    total_ = total_b;
    weights_ = std::make_unique<VmmRegion>(device, total_b, "weights");
    arena_ = std::make_unique<VmmRegion>(device, 2 * total_b, "arena");
    // The only plain allocations: fixed-size library workspaces and staging, made once.
    CUDA_CHECK(cudaMalloc(&blas_ws_, kBlasWorkspace));
    CUDA_CHECK(cudaMalloc(&attn_ws_, kAttnWorkspace));
    CUDA_CHECK(cudaMalloc(&moe_tables_, kMoeTablePointers * sizeof(void*)));
    CUDA_CHECK(cudaMalloc(&moe_meta_, kMoeMetaInts * sizeof(int32_t)));
    CUDA_CHECK(cudaMalloc(&rope_tables_, sizeof(float) * kMaxRopeTables * kMaxRopeHalf));
    for (auto& s : staging_) CUDA_CHECK(cudaMallocHost(&s, kStagingBytes));
    for (auto& ev : staging_done_) CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    lt_ = std::make_unique<cuda::LtMatmul>(stream_, blas_ws_, kBlasWorkspace, f32_);
    const char* attn = std::getenv("MOSAIC_ATTENTION");
    attention_choice_ = attn ? attn : "auto";
    MOSAIC_CHECK(attention_choice_ == "auto" || attention_choice_ == "cudnn" || attention_choice_ == "flash" ||
                     attention_choice_ == "split",
                 "MOSAIC_ATTENTION='{}' is not known: use auto, cudnn, flash or split", attention_choice_);
    // MOSAIC_MOE=plain: routing on the host and one cuBLASLt GEMM per expert, to measure the
    // grouped kernels against.
    const char* moe = std::getenv("MOSAIC_MOE");
    MOSAIC_CHECK(!moe || std::string(moe) == "grouped" || std::string(moe) == "plain",
                 "MOSAIC_MOE='{}' is not known: use grouped or plain", moe ? moe : "");
    grouped_moe_ = !moe || std::string(moe) == "grouped";
#ifdef MOSAIC_CUDNN
    if (!f32_ && attention_choice_ != "flash") cudnn_ = std::make_unique<cuda::CudnnAttention>(stream_);
#endif
    track_peak();
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
#ifdef MOSAIC_CUDNN
    cudnn_.reset();
#endif
    lt_.reset();
    offload_.reset();
    for (auto& s : staging_) cudaFreeHost(s);
    for (auto& ev : staging_done_) cudaEventDestroy(ev);
    cudaFree(blas_ws_);
    cudaFree(attn_ws_);
    cudaFree(moe_tables_);
    cudaFree(moe_meta_);
    cudaFree(rope_tables_);
    arena_.reset();
    weights_.reset();
    cudaStreamDestroy(stream_);
  }

  const BackendTraits& traits() const override { return traits_; }

  void reserve_arena(size_t bytes, size_t keep) override {
    // The virtual-memory arena never moves: growing or shrinking keeps every page below `keep`.
    MOSAIC_CHECK(keep <= bytes, "arena: {} B to keep is more than the {} B reserved", keep, bytes);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    // Keep up to a quarter extra mapped so that steps whose M shrinks by a few rows do not
    // unmap and remap pages every time.
    arena_->resize(bytes, bytes / 4);
    track_peak();
  }
  std::byte* arena() override { return arena_->base(); }
  size_t arena_mapped_bytes() const override { return arena_->mapped(); }

  const void* upload_weight(const io::TensorInfo& t) override {
    const size_t n = static_cast<size_t>(t.numel());
    const size_t es = weight_elem_size();
    const size_t offset = weight_top_;
    weight_top_ = align_up(offset + n * es, kTensorAlignment);
    weights_->resize(weight_top_);
    std::byte* dst = weights_->base() + offset;
    // Stream through two pinned buffers: host memory stays bounded whatever the tensor size.
    const size_t per_chunk = kStagingBytes / es;  // elements
    for (size_t done = 0, i = 0; done < n; done += per_chunk, ++i) {
      const size_t cnt = std::min(per_chunk, n - done);
      const int b = static_cast<int>(i % 2);
      CUDA_CHECK(cudaEventSynchronize(staging_done_[b]));
      const std::byte* src = t.data + done * dtype_size(t.dtype);
      auto value = [&](size_t j) {
        float f;
        if (t.dtype == DType::F32) {
          std::memcpy(&f, src + j * 4, 4);
        } else {
          uint16_t h;
          std::memcpy(&h, src + j * 2, 2);
          f = t.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
        return f;
      };
      if (f32_) {
        auto* stage = static_cast<float*>(staging_[b]);
        if (t.dtype == DType::F32) std::memcpy(stage, src, cnt * 4);
        else for (size_t j = 0; j < cnt; ++j) stage[j] = value(j);
      } else {
        auto* stage = static_cast<uint16_t*>(staging_[b]);
        if (t.dtype == DType::BF16) std::memcpy(stage, src, cnt * 2);
        else for (size_t j = 0; j < cnt; ++j) stage[j] = f32_to_bf16(value(j));
      }
      CUDA_CHECK(cudaMemcpyAsync(dst + done * es, staging_[b], cnt * es, cudaMemcpyHostToDevice, stream_));
      CUDA_CHECK(cudaEventRecord(staging_done_[b], stream_));
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    track_peak();
    return dst;
  }
  size_t weight_bytes() const override { return weight_top_; }
  size_t weight_elem_size() const override { return f32_ ? 4 : 2; }
  double host_to_device_bytes_per_s() override {
    const size_t n = size_t{256} << 20;
    void *host = nullptr, *dev = nullptr;
    CUDA_CHECK(cudaMallocHost(&host, n));
    CUDA_CHECK(cudaMalloc(&dev, n));
    cudaEvent_t a, z;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&z));
    float best = 1e30f;
    for (int r = 0; r < 3; ++r) {
      CUDA_CHECK(cudaEventRecord(a, stream_));
      CUDA_CHECK(cudaMemcpyAsync(dev, host, n, cudaMemcpyHostToDevice, stream_));
      CUDA_CHECK(cudaEventRecord(z, stream_));
      CUDA_CHECK(cudaEventSynchronize(z));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, a, z));
      best = std::min(best, ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(z);
    cudaFree(dev);
    cudaFreeHost(host);
    return static_cast<double>(n) / (static_cast<double>(best) * 1e-3);
  }
  void* alloc_weight(size_t bytes) override {
    const size_t offset = weight_top_;
    weight_top_ = align_up(offset + bytes, kTensorAlignment);
    weights_->resize(weight_top_);
    track_peak();
    return weights_->base() + offset;
  }
  const void* upload_weight_host(const io::TensorInfo& t) override {
    const size_t n = static_cast<size_t>(t.numel());
    void* dst = offload_runner().host_alloc(n * weight_elem_size());
    if (f32_) {
      to_f32(t.dtype, t.data, static_cast<float*>(dst), n);
    } else if (t.dtype == DType::BF16) {
      std::memcpy(dst, t.data, n * 2);
    } else {
      std::vector<float> tmp(n);
      to_f32(t.dtype, t.data, tmp.data(), n);
      auto* out = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(tmp[i]);
    }
    return dst;
  }
  size_t host_weight_bytes() const override { return offload_ ? offload_->host_bytes() : 0; }

  void upload(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  }
  void synchronize() override {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (offload_) offload_->synchronize();  // expert copies still flying behind a step
    track_peak();
  }
  size_t free_memory() const override {
    size_t f = 0, t = 0;
    CUDA_CHECK(cudaMemGetInfo(&f, &t));
    return f;
  }
  size_t peak_device_bytes() const override { return peak_used_; }
  void make_current() override { CUDA_CHECK(cudaSetDevice(device_)); }

  void embed(const int32_t* ids, int64_t rows, const void* table, int64_t d, void* out) override {
    if (f32_) cuda::gather_rows_f32(ids, rows, f(table), d, f(out), stream_);
    else cuda::embed(ids, rows, b(table), d, b(out), stream_);
  }
  void rms_norm(const void* x, int64_t rows, int64_t d, const void* w, float eps, void* y) override {
    if (f32_) cuda::rms_norm_f32(f(x), rows, d, f(w), eps, f(y), stream_);
    else cuda::rms_norm(b(x), rows, d, b(w), eps, b(y), stream_);
  }
  void matmul(const void* a, int64_t rows, int64_t k, const void* w, const void* bias, int64_t n, void* c,
              ElemType c_type, bool accumulate) override {
    lt_->run(a, rows, k, w, bias, n, c, c_type == ElemType::F32, accumulate);
  }
  void rope(void* x, int64_t rows, int heads, int hd, int rot, int64_t pos0, double theta,
            const int32_t* positions) override {
    if (f32_) cuda::rope_f32(f(x), rows, heads, hd, pos0, rope_table(theta, rot), positions, stream_, rot);
    else cuda::rope(b(x), rows, heads, hd, pos0, rope_table(theta, rot), positions, stream_, rot);
  }
  bool attention_takes_key_ranges(int hd) const override { return !f32_ && (hd == 64 || hd == 128); }
  void attention(const void* q, int64_t rows, KvRows kv, KvRows more, int heads, int kv_heads, int hd, float scale,
                 void* out, void*, const AttentionMask& mask) override {
    if (mask.key_hi) {  // a batch's packed sequences: the split kernel reads each query's own keys
      MOSAIC_CHECK(attention_takes_key_ranges(hd) && more.rows == 0,
                   "attention: key ranges need bf16, head dim 64 or 128 and one key source");
      cuda::flash_attention_split(b(q), rows, b(kv.k), b(kv.v), kv.rows, nullptr, nullptr, 0, heads, kv_heads, hd,
                                  scale, b(out), static_cast<float*>(attn_ws_), kAttnWorkspace, stream_, 0, 0, nullptr,
                                  0, mask.key_lo, mask.key_hi, mask.key_span);
      return;
    }
    if (f32_) {
      cuda::attention_f32(f(q), rows, f(kv.k), f(kv.v), kv.rows, f(more.k), f(more.v), more.rows, heads, kv_heads,
                          hd, scale, f(out), stream_, mask.block, mask.positions, mask.pos0);
      return;
    }
    if (mask.block > 0) {  // block-causal (LLaDA2.0): the split kernel skips and masks what rows do not see
      if (hd == 64 || hd == 128)
        cuda::flash_attention_split(b(q), rows, b(kv.k), b(kv.v), kv.rows, b(more.k), b(more.v), more.rows, heads,
                                    kv_heads, hd, scale, b(out), static_cast<float*>(attn_ws_), kAttnWorkspace,
                                    stream_, 0, mask.block, mask.positions, mask.pos0);
      else
        cuda::attention_plain_bf16(b(q), rows, b(kv.k), b(kv.v), kv.rows, b(more.k), b(more.v), more.rows, heads,
                                   kv_heads, hd, scale, b(out), stream_, mask.block, mask.positions, mask.pos0);
      return;
    }
    // Keys in two places need the split kernel (it merges the softmaxes of the parts). So does a
    // single query tile (a cached step's block): one CTA per tile and head would leave most SMs
    // idle (32 rows over 4k-131k keys: 1.7-2.5x faster than cuDNN; at 256 rows cuDNN is faster).
    const bool tiled = hd == 64 || hd == 128;
    const bool few_rows = attention_choice_ == "auto" && rows <= 64;
    if (!tiled && more.rows > 0) {  // head dims other than 64 and 128: the tiny test models
      cuda::attention_plain_bf16(b(q), rows, b(kv.k), b(kv.v), kv.rows, b(more.k), b(more.v), more.rows, heads,
                                 kv_heads, hd, scale, b(out), stream_);
      return;
    }
    if (tiled && (more.rows > 0 || few_rows || attention_choice_ == "split")) {
      cuda::flash_attention_split(b(q), rows, b(kv.k), b(kv.v), kv.rows, b(more.k), b(more.v), more.rows, heads,
                                  kv_heads, hd, scale, b(out), static_cast<float*>(attn_ws_), kAttnWorkspace, stream_);
      return;
    }
#ifdef MOSAIC_CUDNN
    if (cudnn_ && cudnn_->run(q, rows, kv.k, kv.v, kv.rows, heads, kv_heads, hd, scale, out, attn_ws_, kAttnWorkspace))
      return;
    MOSAIC_CHECK(attention_choice_ != "cudnn", "MOSAIC_ATTENTION=cudnn but cuDNN has no engine for rows={} kv={} "
                 "heads={}/{} hd={}", rows, kv.rows, heads, kv_heads, hd);
#endif
    cuda::flash_attention(b(q), rows, b(kv.k), b(kv.v), kv.rows, heads, kv_heads, hd, scale, b(out), stream_);
  }
  // The router's product on the device (fp32 out), then the choice: on the device in bf16; on
  // the host with the CPU's own code in the fp32 verification mode, whose tokens must equal the
  // CPU's (the device's expf may break a near tie the other way).
  void moe_route(const void* h, int64_t rows, int64_t d, const void* gate, const void* bias, const MoeRouting& r,
                 int32_t* ids, float* weights, float* logits) override {
    if (rows == 0) return;
    lt_->run(h, rows, d, gate, nullptr, r.experts, logits, true, false);
    if (!f32_ && grouped_moe_ && cuda::moe_select_supported(r)) {
      cuda::moe_select(logits, rows, b(bias), r, ids, weights, stream_);
      return;
    }
    const size_t n = static_cast<size_t>(rows) * r.experts, nk = static_cast<size_t>(rows) * r.top_k;
    host_logits_.resize(n);
    download(host_logits_.data(), logits, n * sizeof(float));
    std::vector<float> host_bias;
    if (bias) host_bias = weight_to_host_f32(bias, r.experts);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    moe_ids_.resize(nk);
    moe_weights_.resize(nk);
    cpu::moe_select(host_logits_.data(), rows, bias ? host_bias.data() : nullptr, r, moe_ids_.data(),
                    moe_weights_.data());
    upload(ids, moe_ids_.data(), nk * sizeof(int32_t));
    upload(weights, moe_weights_.data(), nk * sizeof(float));
  }
  // bf16: the grouped GEMMs of moe_grouped.cu, all on the device. The fp32 verification mode
  // (and shapes the grouped kernels do not take, and a part of an offloaded layer): expert by expert, gather its rows, gate / up /
  // down through cuBLASLt, add the weighted rows back.
  void moe_experts(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights, int top_k,
                   int64_t ffn, const std::vector<const void*>& experts, void* x, void* workspace,
                   const uint8_t* only) override {
    if (rows == 0) return;
    const int64_t n_experts = static_cast<int64_t>(experts.size()) / 3;
    if (!only && !f32_ && grouped_moe_ && cuda::moe_grouped_supported(d, ffn, static_cast<int>(n_experts))) {
      cuda::moe_experts_grouped(b(h), rows, d, ids, weights, top_k, ffn, static_cast<int>(n_experts), expert_table(experts), b(x),
                                workspace, moe_meta_, stream_);
      return;
    }
    const size_t nk = static_cast<size_t>(rows) * top_k;
    std::vector<int32_t> id(nk);
    std::vector<float> w(nk);
    download(id.data(), ids, nk * sizeof(int32_t));
    download(w.data(), weights, nk * sizeof(float));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<std::vector<std::pair<int32_t, float>>> routed(static_cast<size_t>(n_experts));
    for (size_t i = 0; i < nk; ++i) {
      MOSAIC_CHECK(id[i] >= 0 && id[i] < n_experts, "moe: row {} is routed to expert {} of {}", i / top_k, id[i],
                   n_experts);
      routed[id[i]].emplace_back(static_cast<int32_t>(i / top_k), w[i]);
    }
    moe_ids_.clear();
    moe_weights_.clear();
    for (const auto& list : routed)
      for (const auto& [row, wt] : list) moe_ids_.push_back(row), moe_weights_.push_back(wt);
    // Scratch: one expert's rows (gathered input, gate, up, output) in the activation type, then
    // every routed pair's row index and weight.
    const size_t act = traits_.act_size;
    auto* base = static_cast<std::byte*>(workspace);
    std::byte* xg = base;
    std::byte* g = xg + static_cast<size_t>(rows * d) * act;
    std::byte* u = g + static_cast<size_t>(rows * ffn) * act;
    std::byte* y = u + static_cast<size_t>(rows * ffn) * act;
    auto* idx = reinterpret_cast<int32_t*>(base + static_cast<size_t>(rows) * (2 * d + 2 * ffn) * 4);
    auto* wts = reinterpret_cast<float*>(idx + nk);
    upload(idx, moe_ids_.data(), nk * sizeof(int32_t));
    upload(wts, moe_weights_.data(), nk * sizeof(float));
    int64_t off = 0;
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t n = static_cast<int64_t>(routed[e].size());
      if (n == 0) continue;
      if (only && !only[e]) {  // another part of an offloaded layer runs it
        off += n;
        continue;
      }
      embed(idx + off, n, h, d, xg);
      lt_->run(xg, n, d, experts[3 * e], nullptr, ffn, g, false, false);
      lt_->run(xg, n, d, experts[3 * e + 1], nullptr, ffn, u, false, false);
      swiglu(g, u, n * ffn);
      lt_->run(g, n, ffn, experts[3 * e + 2], nullptr, d, y, false, false);
      if (f32_) cuda::scatter_add_rows_f32(f(y), d, idx + off, wts + off, n, f(x), stream_);
      else cuda::scatter_add_rows(b(y), d, idx + off, wts + off, n, b(x), stream_);
      off += n;
    }
  }
  // An offloaded layer (offload_runner.h): promoted experts copied into their slots, the resident
  // ones as grouped GEMMs over the slots (bf16) or expert by expert (fp32), the rest on the CPU
  // meanwhile, added back.
  void moe_experts_offloaded(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights,
                             int top_k, int64_t ffn, const OffloadedExperts& o, void* x, void* workspace) override {
    if (rows == 0) return;
    const int experts = static_cast<int>(o.host->size() / 3);
    cuda::OffloadRunner::GroupedPart grouped;
    if (!f32_ && grouped_moe_ && cuda::moe_grouped_supported(d, ffn, experts))
      grouped = [&](const int32_t* gpu_ids, const cuda::bf16* const* table) {
        cuda::moe_experts_grouped(b(h), rows, d, gpu_ids, weights, top_k, ffn, experts, table, b(x), workspace,
                                  moe_meta_, stream_);
      };
    offload_runner().run(h, rows, d, top_k, ffn, o, x, grouped, [&] {
      moe_experts(h, rows, d, ids, weights, top_k, ffn, *o.device, x, workspace, o.on_gpu);
    });
  }
  cuda::OffloadRunner& offload_runner() {
    if (!offload_) offload_ = std::make_unique<cuda::OffloadRunner>(stream_, f32_);
    return *offload_;
  }
  // The device copy of a layer's expert pointers (gate[0..E), up[0..E), down[0..E)), made on
  // first use in the fixed table region and kept: weights never move.
  const cuda::bf16* const* expert_table(const std::vector<const void*>& experts) {
    auto it = expert_tables_.find(experts.front());
    if (it != expert_tables_.end()) return it->second;
    const size_t n = experts.size(), E = n / 3;
    MOSAIC_CHECK(moe_tables_used_ + n <= kMoeTablePointers,
                 "moe: the expert pointer tables need more than {} entries ({} layers so far)", kMoeTablePointers,
                 expert_tables_.size());
    std::vector<const void*> t(n);
    for (size_t e = 0; e < E; ++e) {
      t[e] = experts[3 * e];
      t[E + e] = experts[3 * e + 1];
      t[2 * E + e] = experts[3 * e + 2];
    }
    auto* dst = reinterpret_cast<const cuda::bf16**>(moe_tables_) + moe_tables_used_;
    CUDA_CHECK(cudaMemcpy(dst, t.data(), n * sizeof(void*), cudaMemcpyHostToDevice));
    moe_tables_used_ += n;
    return expert_tables_.emplace(experts.front(), dst).first->second;
  }
  void swiglu(void* g, const void* u, int64_t n) override {
    if (f32_) cuda::swiglu_f32(f(g), f(u), n, stream_);
    else cuda::swiglu(b(g), b(u), n, stream_);
  }
  void gather_rows(const void* x, int64_t d, const int32_t* idx, int64_t rows, void* out) override {
    embed(idx, rows, x, d, out);
  }
  void scatter_rows(const void* x, int64_t d, const int32_t* idx, int64_t rows, void* out) override {
    if (f32_) cuda::scatter_rows_f32(f(x), d, idx, rows, f(out), stream_);
    else cuda::scatter_rows(b(x), d, idx, rows, b(out), stream_);
  }
  void copy_columns(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                    int64_t rows) override {
    if (rows > 0)
      CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, static_cast<size_t>(rows),
                                   cudaMemcpyDeviceToDevice, stream_));
  }
  void cache_select(const void* q_block, int64_t block_rows, const void* k, const void* v, const int32_t* outside,
                    int64_t n, int heads, int kv_heads, int hd, int kernel, int64_t keep, float* scores,
                    int32_t* kept, void* k_cache, void* v_cache) override {
    MOSAIC_CHECK(keep >= 0 && keep <= n, "cache_select: keep {} of {} rows", keep, n);
    // The rows are gathered in parallel: compacting a cache in place would race.
    MOSAIC_CHECK(k != k_cache && v != v_cache, "cache_select: the cache cannot be its own source on CUDA");
    // 1-2. The mean query into scores[n..), the raw scores into `kept` (n 4-byte slots of
    // scratch, free until step 3), max-pooled from there into scores[0..n).
    float* qbar = scores + n;
    float* raw = reinterpret_cast<float*>(kept);
    if (f32_) cuda::cache_scores_f32(f(q_block), block_rows, f(k), outside, n, heads, kv_heads, hd, kernel, qbar, raw,
                                     scores, stream_);
    else cuda::cache_scores(b(q_block), block_rows, b(k), outside, n, heads, kv_heads, hd, kernel, qbar, raw, scores,
                            stream_);
    if (keep == 0) return;
    // 3. The top `keep` on the host, as the CPU picks them (n floats and ints across PCIe
    // once per layer per store step), then the source rows outside[kept[r]] back into `kept`.
    // host_kept_ is touched only after a synchronize, so its previous upload is done by then.
    const size_t nn = static_cast<size_t>(n);
    host_scores_.resize(nn);
    host_outside_.resize(nn);
    download(host_scores_.data(), scores, nn * 4);
    download(host_outside_.data(), outside, nn * 4);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    host_kept_.resize(static_cast<size_t>(keep));
    cpu::top_rows(host_scores_.data(), n, keep, host_kept_.data());
    for (auto& j : host_kept_) j = host_outside_[static_cast<size_t>(j)];
    upload(kept, host_kept_.data(), static_cast<size_t>(keep) * 4);
    // 4. Rows 0..keep-1 of the caches.
    const int64_t kvd = static_cast<int64_t>(kv_heads) * hd;
    if (f32_) {
      cuda::gather_rows_f32(kept, keep, f(k), kvd, f(k_cache), stream_);
      cuda::gather_rows_f32(kept, keep, f(v), kvd, f(v_cache), stream_);
    } else {
      cuda::embed(kept, keep, b(k), kvd, b(k_cache), stream_);
      cuda::embed(kept, keep, b(v), kvd, b(v_cache), stream_);
    }
  }
  void cfg_combine(float* cond, const float* uncond, int64_t n, float scale) override {
    cuda::cfg_combine(cond, uncond, n, scale, stream_);
  }
  void sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                   int32_t* token, float* conf) override {
    if (p.rule == TokenRule::Llada) {
      cuda::sample_rows(logits, rows, vocab, pos, p, token, conf, stream_);
      return;
    }
    if (p.rule == TokenRule::Dream && !p.filters()) {
      cuda::dream_sample_rows(logits, rows, vocab, pos, p, token, conf, stream_);
      return;
    }
    // Top-p / top-k need each row sorted, and LLaDA2.0's rule has no kernel yet: for now on the
    // host, from the M x V logits that cross PCIe once per step (a few ms at Dream-7B's vocabulary).
    const size_t n = static_cast<size_t>(rows);
    host_logits_.resize(n * static_cast<size_t>(vocab));
    host_pos_.resize(n);
    host_token_.resize(n);
    host_conf_.resize(n);
    download(host_logits_.data(), logits, host_logits_.size() * 4);
    download(host_pos_.data(), pos, n * 4);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    cpu::sample_rows(host_logits_.data(), rows, vocab, host_pos_.data(), p, host_token_.data(), host_conf_.data());
    upload(token, host_token_.data(), n * 4);
    upload(conf, host_conf_.data(), n * 4);
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host vectors are reused
  }
  void rank_rows_in_ranges(const float* conf, const std::vector<RowRange>& ranges, int32_t* order) override {
    std::vector<int64_t> first, count;
    for (const RowRange& r : ranges) {
      if (r.count > cuda::kMaxRankRows) {  // rare (M > 8192 in one sequence): each range apart
        Backend::rank_rows_in_ranges(conf, ranges, order);
        return;
      }
      first.push_back(r.first);
      count.push_back(r.count);
    }
    cuda::rank_rows_in_ranges(conf, first.data(), count.data(), static_cast<int64_t>(ranges.size()), order, stream_);
  }
  void rank_rows(const float* conf, int64_t n, int32_t* order) override {
    if (n <= cuda::kMaxRankRows) {
      cuda::rank_rows(conf, n, order, stream_);
      return;
    }
    // Past one block's shared memory: rank on the host (n floats, rare: M > 8192).
    host_conf_.resize(static_cast<size_t>(n));
    host_order_.resize(static_cast<size_t>(n));
    download(host_conf_.data(), conf, static_cast<size_t>(n) * 4);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::iota(host_order_.begin(), host_order_.end(), 0);
    std::stable_sort(host_order_.begin(), host_order_.end(),
                     [&](int32_t a, int32_t c) { return host_conf_[a] > host_conf_[c]; });
    upload(order, host_order_.data(), static_cast<size_t>(n) * 4);
  }

 private:
  static cuda::bf16* b(void* p) { return static_cast<cuda::bf16*>(p); }
  static const cuda::bf16* b(const void* p) { return static_cast<const cuda::bf16*>(p); }
  static float* f(void* p) { return static_cast<float*>(p); }
  static const float* f(const void* p) { return static_cast<const float*>(p); }

  // n weights (the weight type on the device) as host floats.
  std::vector<float> weight_to_host_f32(const void* w, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
    if (f32_) {
      download(out.data(), w, out.size() * 4);
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      return out;
    }
    std::vector<uint16_t> h(out.size());
    download(h.data(), w, h.size() * 2);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (size_t i = 0; i < h.size(); ++i) out[i] = bf16_to_f32(h[i]);
    return out;
  }

  const float* rope_table(double theta, int hd) {
    auto key = std::make_pair(theta, hd);
    auto it = rope_slots_.find(key);
    if (it != rope_slots_.end()) return rope_tables_ + it->second * kMaxRopeHalf;
    MOSAIC_CHECK(hd / 2 <= kMaxRopeHalf && static_cast<int>(rope_slots_.size()) < kMaxRopeTables,
                 "cuda rope: head dim {} or number of rope tables past the backend's limits", hd);
    const int slot = static_cast<int>(rope_slots_.size());
    rope_host_[slot] = rope_inv_freq(theta, hd);
    float* dst = rope_tables_ + slot * kMaxRopeHalf;
    CUDA_CHECK(cudaMemcpyAsync(dst, rope_host_[slot].data(), sizeof(float) * (hd / 2), cudaMemcpyHostToDevice,
                               stream_));
    rope_slots_.emplace(key, slot);
    return dst;
  }

  void track_peak() {
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) == cudaSuccess) peak_used_ = std::max(peak_used_, t - f);
  }

  BackendTraits traits_;
  int device_;
  bool f32_;
  cudaStream_t stream_ = nullptr;
  size_t total_ = 0, peak_used_ = 0, weight_top_ = 0;
  std::unique_ptr<VmmRegion> weights_, arena_;
  void* blas_ws_ = nullptr;
  void* attn_ws_ = nullptr;
  void* moe_tables_ = nullptr;
  size_t moe_tables_used_ = 0;
  std::map<const void*, const cuda::bf16* const*> expert_tables_;
  int32_t* moe_meta_ = nullptr;
  bool grouped_moe_ = true;
  float* rope_tables_ = nullptr;
  std::map<std::pair<double, int>, int> rope_slots_;
  std::vector<float> rope_host_[kMaxRopeTables];
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staging_done_[2] = {nullptr, nullptr};
  std::unique_ptr<cuda::LtMatmul> lt_;
  std::unique_ptr<cuda::OffloadRunner> offload_;
  std::string attention_choice_;
#ifdef MOSAIC_CUDNN
  std::unique_ptr<cuda::CudnnAttention> cudnn_;
#endif
  std::vector<float> host_conf_, host_logits_;
  std::vector<int32_t> moe_ids_;  // routing on the host (moe_route, moe_experts)
  std::vector<float> moe_weights_;
  std::vector<int32_t> host_order_, host_pos_, host_token_;
  std::vector<float> host_scores_;                 // cache_select's pooled scores
  std::vector<int32_t> host_outside_, host_kept_;  // its outside rows, and the rows it keeps
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device, bool fp32) { return std::make_unique<CudaBackend>(device, fp32); }

int cuda_device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

}  // namespace mosaic
