#include "backend/cuda/offload_runner.h"

#include <algorithm>
#include <chrono>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "offload/cpu_experts.h"

namespace mosaic::cuda {

namespace {

constexpr size_t kPinnedChunk = size_t{1} << 30;

// Grow a staging buffer (contents dropped) to hold `bytes`. The caller's stream is idle (the
// executor synchronizes before every offloaded layer), so the old buffer is free to go; after a
// failed allocation the buffer is empty, never dangling.
template <class T>
void grow_host(T*& p, size_t& cap, size_t bytes) {
  if (bytes <= cap) return;
  if (p) CUDA_CHECK(cudaFreeHost(const_cast<void*>(static_cast<const void*>(p))));
  p = nullptr;
  cap = 0;
  void* q = nullptr;
  CUDA_CHECK(cudaMallocHost(&q, bytes));
  p = static_cast<T*>(q);
  cap = bytes;
}

template <class T>
void grow_device(T*& p, size_t& cap, size_t bytes) {
  if (bytes <= cap) return;
  if (p) CUDA_CHECK(cudaFree(const_cast<void*>(static_cast<const void*>(p))));
  p = nullptr;
  cap = 0;
  void* q = nullptr;
  CUDA_CHECK(cudaMalloc(&q, bytes));
  p = static_cast<T*>(q);
  cap = bytes;
}

}  // namespace

OffloadRunner::OffloadRunner(cudaStream_t compute, bool f32) : stream_(compute), f32_(f32) {
  CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
  for (cudaEvent_t* e : {&before_copy_, &copied_, &h_ready_})
    CUDA_CHECK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
}

OffloadRunner::~OffloadRunner() {
  cudaStreamSynchronize(stream_);
  cudaStreamSynchronize(copy_);
  for (std::byte* c : pool_) cudaFreeHost(c);
  for (void* p : {h_host_, static_cast<void*>(y_host_), static_cast<void*>(ids_host_), static_cast<void*>(table_host_)})
    if (p) cudaFreeHost(p);
  for (void* p : {static_cast<void*>(y_dev_), static_cast<void*>(ids_dev_), static_cast<void*>(table_dev_)})
    if (p) cudaFree(p);
  for (cudaEvent_t e : {before_copy_, copied_, h_ready_}) cudaEventDestroy(e);
  for (auto& [layer, e] : landed_) cudaEventDestroy(e);
  cudaStreamDestroy(copy_);
}

void OffloadRunner::synchronize() { CUDA_CHECK(cudaStreamSynchronize(copy_)); }

cudaEvent_t OffloadRunner::landed_event(int layer) {
  auto it = landed_.find(layer);
  if (it != landed_.end()) return it->second;
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return landed_[layer] = e;
}

void* OffloadRunner::host_alloc(size_t bytes) {
  bytes = (bytes + 255) & ~size_t{255};
  if (bytes > pool_left_) {
    const size_t chunk = std::max(bytes, kPinnedChunk);
    void* p = nullptr;
    const cudaError_t e = cudaMallocHost(&p, chunk);
    MOSAIC_CHECK(e == cudaSuccess, "expert offload: cannot pin {} MiB more host memory for the experts' copies "
                 "({} MiB pinned so far): {}", chunk >> 20, host_bytes_ >> 20, cudaGetErrorString(e));
    pool_.push_back(static_cast<std::byte*>(p));
    pool_top_ = pool_.back();
    pool_left_ = chunk;
  }
  void* p = pool_top_;
  pool_top_ += bytes;
  pool_left_ -= bytes;
  host_bytes_ += bytes;
  return p;
}

void OffloadRunner::run(const void* h, int64_t rows, int64_t d, int top_k, int64_t ffn, const OffloadedExperts& o,
                        void* x, const GroupedPart& grouped, const PerExpertPart& per_expert) {
  const size_t es = f32_ ? 4 : 2;
  const size_t matrix = static_cast<size_t>(d * ffn) * es;
  const int experts = static_cast<int>(o.host->size() / 3);
  const size_t pairs = static_cast<size_t>(rows) * top_k;

  // 0. Copies an earlier step sent behind land before this step's device part reads their slots
  //    (waited for before this step's own copies re-arm the layer's event).
  if (o.wait_landed) {
    auto it = landed_.find(o.layer);
    if (it != landed_.end()) CUDA_CHECK(cudaStreamWaitEvent(stream_, it->second));
  }
  // 1. Promoted experts into their slots, on the copy stream, after the work queued so far (which
  //    may still read what the slots held): first those the device part waits for, then those
  //    that land behind the step (the layer's next step waits for them).
  auto copy = [&](const std::vector<int32_t>& list) {
    for (int32_t e : list)
      for (int j = 0; j < 3; ++j)
        CUDA_CHECK(cudaMemcpyAsync(const_cast<void*>((*o.device)[3 * e + j]), (*o.host)[3 * e + j], matrix,
                                   cudaMemcpyHostToDevice, copy_));
  };
  const bool wait_copies = !o.copy_in->empty();
  if (wait_copies || !o.copy_behind->empty()) {
    CUDA_CHECK(cudaEventRecord(before_copy_, stream_));
    CUDA_CHECK(cudaStreamWaitEvent(copy_, before_copy_));
  }
  if (wait_copies) {
    copy(*o.copy_in);
    CUDA_CHECK(cudaEventRecord(copied_, copy_));
  }
  if (!o.copy_behind->empty()) {
    copy(*o.copy_behind);
    CUDA_CHECK(cudaEventRecord(landed_event(o.layer), copy_));
  }
  int64_t cpu_pairs = 0;
  for (size_t i = 0; i < pairs; ++i) cpu_pairs += !o.on_gpu[o.host_ids[i]];

  // 2. The CPU's rows leave before the device part waits for the copies, so the CPU starts at once.
  const size_t h_bytes = static_cast<size_t>(rows * d) * es;
  if (cpu_pairs > 0) {
    grow_host(h_host_, h_cap_, h_bytes);
    CUDA_CHECK(cudaMemcpyAsync(h_host_, h, h_bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaEventRecord(h_ready_, stream_));
  }
  if (wait_copies) CUDA_CHECK(cudaStreamWaitEvent(stream_, copied_));

  // 3. The device part, queued.
  if (cpu_pairs < static_cast<int64_t>(pairs)) {
    if (grouped) {
      grow_host(ids_host_, ids_cap_, pairs * 4);
      grow_device(ids_dev_, ids_dev_cap_, pairs * 4);
      for (size_t i = 0; i < pairs; ++i) ids_host_[i] = o.on_gpu[o.host_ids[i]] ? o.host_ids[i] : -1;
      grow_host(table_host_, table_cap_, o.device->size() * sizeof(void*));
      grow_device(table_dev_, table_dev_cap_, o.device->size() * sizeof(void*));
      // The grouped kernels' order: every gate, then every up, then every down.
      for (int e = 0; e < experts; ++e)
        for (int j = 0; j < 3; ++j) table_host_[j * experts + e] = (*o.device)[3 * e + j];
      CUDA_CHECK(cudaMemcpyAsync(ids_dev_, ids_host_, pairs * 4, cudaMemcpyHostToDevice, stream_));
      CUDA_CHECK(cudaMemcpyAsync(table_dev_, table_host_, o.device->size() * sizeof(void*), cudaMemcpyHostToDevice,
                                 stream_));
      grouped(ids_dev_, table_dev_);
    } else {
      per_expert();
    }
  }

  // 4. The CPU part while the device runs, then its sum added to the residual rows.
  if (cpu_pairs > 0) {
    const size_t y_bytes = static_cast<size_t>(rows * d) * 4;
    grow_host(y_host_, y_cap_, y_bytes);
    grow_device(y_dev_, y_dev_cap_, y_bytes);
    CUDA_CHECK(cudaEventSynchronize(h_ready_));
    const auto t0 = std::chrono::steady_clock::now();
    offload::cpu_experts(h_host_, rows, d, o.host_ids, o.host_weights, top_k, ffn, *o.host, !f32_, o.on_gpu, y_host_);
    if (o.cpu_seconds) *o.cpu_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CUDA_CHECK(cudaMemcpyAsync(y_dev_, y_host_, y_bytes, cudaMemcpyHostToDevice, stream_));
    if (f32_)
      add_f32(y_dev_, rows * d, static_cast<float*>(x), stream_);
    else
      add_f32(y_dev_, rows * d, static_cast<bf16*>(x), stream_);
  }
}

}  // namespace mosaic::cuda
