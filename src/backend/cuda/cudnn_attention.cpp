// cuDNN fused attention (inference forward) through the backend descriptor API.
// docs/notes/cudnn_attention.md describes the descriptor graphs and why each attribute is set.
#include "backend/cuda/cudnn_attention.h"

#include <cudnn.h>

#include <array>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace mosaic::cuda {
namespace cudnn_detail {

// A failed cuDNN call. Carries the status so that plan building can tell "cuDNN has no engine for
// this" (CUDNN_STATUS_NOT_SUPPORTED*) from a real error; it is a mosaic::Error for callers.
class StatusError : public Error {
 public:
  StatusError(cudnnStatus_t st, const std::string& msg) : Error(msg), status(st) {}
  cudnnStatus_t status;
};

bool not_supported(cudnnStatus_t st) { return CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_NOT_SUPPORTED; }

// cuDNN's detailed message for the last error of this thread ("" when there is none).
std::string last_error_detail() {
  char buf[2048];
  buf[0] = '\0';
  cudnnGetLastErrorString(buf, sizeof(buf));
  buf[sizeof(buf) - 1] = '\0';
  return buf;
}

std::string status_text(cudnnStatus_t st) {
  std::string s = fmt::format("{} ({})", cudnnGetErrorString(st), static_cast<int>(st));
  const std::string detail = last_error_detail();
  if (!detail.empty()) s += ": " + detail;
  return s;
}

[[noreturn]] void fail_status(cudnnStatus_t st, const std::string& what, const char* expr, const char* file,
                              int line) {
  throw StatusError(st, fmt::format("cuDNN error {} while {} [{} at {}:{}]", status_text(st), what, expr, file, line));
}

// Every cuDNN call goes through this; `what` names the descriptor and attribute.
#define MOSAIC_CUDNN_CHECK(expr, what)                                                               \
  do {                                                                                               \
    cudnnStatus_t st_ = (expr);                                                                      \
    if (st_ != CUDNN_STATUS_SUCCESS) ::mosaic::cuda::cudnn_detail::fail_status(st_, (what), #expr, __FILE__, __LINE__); \
  } while (0)

// Owns one backend descriptor; its name goes into every error message about it.
class Desc {
 public:
  Desc() = default;
  Desc(cudnnBackendDescriptorType_t type, std::string name) : name_(std::move(name)) {
    MOSAIC_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_), "creating " + name_);
  }
  ~Desc() { reset(); }
  Desc(Desc&& o) noexcept : d_(std::exchange(o.d_, nullptr)), name_(std::move(o.name_)) {}
  Desc& operator=(Desc&& o) noexcept {
    if (this != &o) {
      reset();
      d_ = std::exchange(o.d_, nullptr);
      name_ = std::move(o.name_);
    }
    return *this;
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;

  void reset() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
    d_ = nullptr;
  }
  cudnnBackendDescriptor_t get() const { return d_; }
  const std::string& name() const { return name_; }

  void set(cudnnBackendAttributeName_t attr, const char* attr_name, cudnnBackendAttributeType_t type, int64_t count,
           const void* value) const {
    MOSAIC_CUDNN_CHECK(cudnnBackendSetAttribute(d_, attr, type, count, value),
                       fmt::format("setting {} on {}", attr_name, name_));
  }
  void set_desc(cudnnBackendAttributeName_t attr, const char* attr_name, cudnnBackendDescriptor_t other) const {
    set(attr, attr_name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &other);
  }
  void finalize() const { MOSAIC_CUDNN_CHECK(cudnnBackendFinalize(d_), "finalizing " + name_); }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
  std::string name_;
};

#define SET_ATTR(desc, attr, type, count, value) (desc).set(attr, #attr, type, count, value)
#define SET_DESC(desc, attr, other) (desc).set_desc(attr, #attr, other)

using Dims = std::array<int64_t, 4>;

std::string dims_text(const Dims& d) { return fmt::format("[{},{},{},{}]", d[0], d[1], d[2], d[3]); }

const char* dtype_text(cudnnDataType_t t) {
  switch (t) {
    case CUDNN_DATA_FLOAT:
      return "f32";
    case CUDNN_DATA_BFLOAT16:
      return "bf16";
    default:
      return "?";
  }
}

// Tensor uids: the real tensors (the variant pack names them) and the virtual ones (composite graph).
enum : int64_t {
  kUidQ = 1,
  kUidK = 2,
  kUidV = 3,
  kUidO = 4,
  kUidScale = 5,
  kUidS = 101,        // q k^T
  kUidSScaled = 102,  // scale * q k^T
  kUidMax = 103,      // row max
  kUidSub = 104,      // s - max
  kUidExp = 105,      // exp(s - max)
  kUidSum = 106,      // row sum of exp
  kUidLog = 107,      // log(sum)
  kUidStats = 108,    // max + log(sum): the (virtual, unused) softmax stats of the flash pattern
  kUidP = 109,        // exp / sum, bf16: the A operand of the second matmul
};

struct Shape {
  int64_t rows, kv_rows;
  int64_t heads, kv_heads, hd;
};

// Keeps every descriptor of one graph alive (in creation order) for the plan's lifetime.
class Builder {
 public:
  explicit Builder(cudnnHandle_t handle) : handle_(handle) {}

  cudnnBackendDescriptor_t keep(Desc&& d) {
    descs_.push_back(std::move(d));
    return descs_.back().get();
  }

  cudnnBackendDescriptor_t tensor(const char* label, int64_t uid, cudnnDataType_t dt, const Dims& dims,
                                  const Dims& strides, bool is_virtual, bool by_value = false) {
    Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR,
           fmt::format("tensor {} (uid {}, {} {}, dims {}, strides {})", label, uid, dtype_text(dt),
                       is_virtual ? "virtual" : (by_value ? "by-value" : "real"), dims_text(dims),
                       dims_text(strides)));
    const int64_t alignment = 16;
    const bool yes = true;
    SET_ATTR(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    SET_ATTR(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data());
    SET_ATTR(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data());
    SET_ATTR(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    SET_ATTR(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
    if (is_virtual) SET_ATTR(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &yes);
    if (by_value) SET_ATTR(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes);
    t.finalize();
    return keep(std::move(t));
  }

  void matmul(const char* label, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    Desc mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR, fmt::format("matmul descriptor of {}", label));
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    SET_ATTR(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    mm.finalize();
    Desc op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, fmt::format("operation {} (matmul)", label));
    SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, a);
    SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, b);
    SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, c);
    SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, mm.get());
    op.finalize();
    keep(std::move(mm));
    ops_.push_back(keep(std::move(op)));
  }

  // y = mode(x) or y = mode(x, b), math in f32.
  void pointwise(const char* label, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                 cudnnBackendDescriptor_t y) {
    Desc pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, fmt::format("pointwise descriptor of {}", label));
    const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    SET_ATTR(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    SET_ATTR(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    pw.finalize();
    Desc op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, fmt::format("operation {} (pointwise)", label));
    SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw.get());
    SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
    SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    op.finalize();
    keep(std::move(pw));
    ops_.push_back(keep(std::move(op)));
  }

  // y = reduce(x) over the dimensions where y has extent 1, in f32.
  void reduction(const char* label, cudnnReduceTensorOp_t red, cudnnBackendDescriptor_t x,
                 cudnnBackendDescriptor_t y) {
    Desc rd(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, fmt::format("reduction descriptor of {}", label));
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    SET_ATTR(rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &red);
    SET_ATTR(rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    rd.finalize();
    Desc op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, fmt::format("operation {} (reduction)", label));
    SET_DESC(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x);
    SET_DESC(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
    SET_DESC(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd.get());
    op.finalize();
    keep(std::move(rd));
    ops_.push_back(keep(std::move(op)));
  }

#if CUDNN_VERSION >= 91301
  void sdpa_fwd(cudnnBackendDescriptor_t q, cudnnBackendDescriptor_t k, cudnnBackendDescriptor_t v,
                cudnnBackendDescriptor_t o, cudnnBackendDescriptor_t scale) {
    Desc op(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, "operation sdpa_fwd (unified SDPA forward)");
    SET_DESC(op, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, q);
    SET_DESC(op, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, k);
    SET_DESC(op, CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, v);
    SET_DESC(op, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, o);
    SET_DESC(op, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, scale);
    // No STATSDESC: inference (the frontend's generate_stats = false).
    op.finalize();
    ops_.push_back(keep(std::move(op)));
  }
#endif

  // The operation graph over every operation added so far; returns it (kept alive here too).
  cudnnBackendDescriptor_t operation_graph(const std::string& label) {
    Desc g(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, fmt::format("operation graph ({}, {} ops)", label, ops_.size()));
    SET_ATTR(g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle_);
    SET_ATTR(g, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops_.size()),
             ops_.data());
    g.finalize();
    return keep(std::move(g));
  }

  std::vector<Desc> take() { return std::move(descs_); }

 private:
  cudnnHandle_t handle_;
  std::vector<Desc> descs_;
  std::vector<cudnnBackendDescriptor_t> ops_;
};

// Logical (b, h, s, d) views of the caller's row-major [s, h*d] buffers, batch 1.
Dims bshd_dims(int64_t h, int64_t s, int64_t d) { return {1, h, s, d}; }
Dims bshd_strides(int64_t h, int64_t s, int64_t d) { return {s * h * d, d, h * d, 1}; }

void build_unified(Builder& b, const Shape& s) {
#if CUDNN_VERSION >= 91301
  const cudnnDataType_t bf = CUDNN_DATA_BFLOAT16;
  auto q = b.tensor("Q", kUidQ, bf, bshd_dims(s.heads, s.rows, s.hd), bshd_strides(s.heads, s.rows, s.hd), false);
  // The unified op takes K as [b, h_k, s_kv, d] (the frontend transposes only for the composite graph).
  auto k = b.tensor("K", kUidK, bf, bshd_dims(s.kv_heads, s.kv_rows, s.hd), bshd_strides(s.kv_heads, s.kv_rows, s.hd),
                    false);
  auto v = b.tensor("V", kUidV, bf, bshd_dims(s.kv_heads, s.kv_rows, s.hd), bshd_strides(s.kv_heads, s.kv_rows, s.hd),
                    false);
  auto o = b.tensor("O", kUidO, bf, bshd_dims(s.heads, s.rows, s.hd), bshd_strides(s.heads, s.rows, s.hd), false);
  auto scale = b.tensor("attn_scale", kUidScale, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  b.sdpa_fwd(q, k, v, o, scale);
#else
  (void)b;
  (void)s;
  MOSAIC_FAIL("the unified SDPA graph needs cuDNN >= 9.13.1 headers; this build has {}", CUDNN_VERSION);
#endif
}

void build_composite(Builder& b, const Shape& s) {
  const cudnnDataType_t bf = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  const int64_t h = s.heads, hk = s.kv_heads, sq = s.rows, skv = s.kv_rows, d = s.hd;
  auto q = b.tensor("Q", kUidQ, bf, bshd_dims(h, sq, d), bshd_strides(h, sq, d), false);
  // K^T as a view: K's dims and strides with the last two swapped ([b, h_k, d, s_kv]).
  auto kt = b.tensor("K^T", kUidK, bf, {1, hk, d, skv}, {skv * hk * d, d, 1, hk * d}, false);
  auto v = b.tensor("V", kUidV, bf, bshd_dims(hk, skv, d), bshd_strides(hk, skv, d), false);
  auto o = b.tensor("O", kUidO, bf, bshd_dims(h, sq, d), bshd_strides(h, sq, d), false);
  auto scale = b.tensor("attn_scale", kUidScale, f32, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);

  const Dims sd{1, h, sq, skv}, ss{h * sq * skv, sq * skv, skv, 1};  // scores
  const Dims rd{1, h, sq, 1}, rs{h * sq, sq, 1, 1};                  // per-row statistics
  auto s_raw = b.tensor("S", kUidS, f32, sd, ss, true);
  auto s_scaled = b.tensor("S_scaled", kUidSScaled, f32, sd, ss, true);
  auto mx = b.tensor("Max", kUidMax, f32, rd, rs, true);
  auto sub = b.tensor("S_minus_max", kUidSub, f32, sd, ss, true);
  auto ex = b.tensor("Exp", kUidExp, f32, sd, ss, true);
  auto sum = b.tensor("SumExp", kUidSum, f32, rd, rs, true);
  auto lg = b.tensor("LogSumExp", kUidLog, f32, rd, rs, true);
  auto stats = b.tensor("Stats", kUidStats, f32, rd, rs, true);
  auto p = b.tensor("P", kUidP, bf, sd, ss, true);

  b.matmul("bmm1 (S = Q K^T)", q, kt, s_raw);
  b.pointwise("attn_scale (S * scale)", CUDNN_POINTWISE_MUL, s_raw, scale, s_scaled);
  b.reduction("softmax max", CUDNN_REDUCE_TENSOR_MAX, s_scaled, mx);
  b.pointwise("softmax sub (S - max)", CUDNN_POINTWISE_SUB, s_scaled, mx, sub);
  b.pointwise("softmax exp", CUDNN_POINTWISE_EXP, sub, nullptr, ex);
  b.reduction("softmax sum", CUDNN_REDUCE_TENSOR_ADD, ex, sum);
  b.pointwise("softmax log (log sum)", CUDNN_POINTWISE_LOG, sum, nullptr, lg);
  b.pointwise("softmax stats (max + log sum)", CUDNN_POINTWISE_ADD, mx, lg, stats);
  b.pointwise("softmax div (exp / sum)", CUDNN_POINTWISE_DIV, ex, sum, p);
  b.matmul("bmm2 (O = P V)", p, v, o);
}

const char* heur_mode_text(cudnnBackendHeurMode_t m) {
  switch (m) {
    case CUDNN_HEUR_MODE_A:
      return "A";
    case CUDNN_HEUR_MODE_B:
      return "B";
    case CUDNN_HEUR_MODE_FALLBACK:
      return "FALLBACK";
    default:
      return "?";
  }
}

// "engine 12" for an engine config, "engine ?" when cuDNN will not say.
std::string engine_text(cudnnBackendDescriptor_t cfg) {
  try {
    Desc eng(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "engine (read back from an engine config)");
    cudnnBackendDescriptor_t raw = eng.get();
    int64_t n = 0;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &raw) !=
        CUDNN_STATUS_SUCCESS)
      return "engine ?";
    int64_t index = -1;
    if (cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &index) !=
        CUDNN_STATUS_SUCCESS)
      return "engine ?";
    return fmt::format("engine {}", index);
  } catch (const std::exception&) {
    return "engine ?";
  }
}

std::mutex& heur_b_mutex() {  // the frontend serialises mode-B heuristics queries
  static std::mutex m;
  return m;
}

struct Built {
  Desc cfg;  // the engine config the plan was made from (kept alive with it, as the frontend does)
  Desc plan;
  size_t workspace = 0;
  std::string summary;
};

// Heuristics (A, then B, then FALLBACK) over a finalized operation graph; the first engine config
// whose execution plan finalizes wins. Every step goes into `log`. False when none finalizes.
bool find_plan(cudnnHandle_t handle, cudnnBackendDescriptor_t op_graph, Built& out, std::string& log,
               bool& fell_back) {
  int tried = 0;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_B, CUDNN_HEUR_MODE_FALLBACK}) {
    const char* mname = heur_mode_text(mode);
    try {
      Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, fmt::format("engine heuristics (mode {})", mname));
      SET_DESC(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, op_graph);
      SET_ATTR(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
      cudnnStatus_t st;
      if (mode == CUDNN_HEUR_MODE_B) {
        std::lock_guard<std::mutex> lock(heur_b_mutex());
        st = cudnnBackendFinalize(heur.get());
      } else {
        st = cudnnBackendFinalize(heur.get());
      }
      if (st != CUDNN_STATUS_SUCCESS) {
        log += fmt::format("    heuristics mode {}: finalize -> {}\n", mname, status_text(st));
        fell_back = true;
        continue;
      }
      int64_t count = 0;
      st = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                    nullptr);
      if (st != CUDNN_STATUS_SUCCESS) {
        log += fmt::format("    heuristics mode {}: reading the result count -> {}\n", mname, status_text(st));
        fell_back = true;
        continue;
      }
      log += fmt::format("    heuristics mode {}: {} engine config(s)\n", mname, count);
      if (count <= 0) {
        fell_back = true;
        continue;
      }
      std::vector<Desc> cfgs;
      std::vector<cudnnBackendDescriptor_t> raw;
      for (int64_t i = 0; i < count; ++i) {
        cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, fmt::format("engine config {} (mode {})", i, mname));
        raw.push_back(cfgs.back().get());
      }
      int64_t got = 0;
      st = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                    &got, raw.data());
      if (st != CUDNN_STATUS_SUCCESS) {
        log += fmt::format("    heuristics mode {}: reading the engine configs -> {}\n", mname, status_text(st));
        fell_back = true;
        continue;
      }
      for (int64_t i = 0; i < got && i < count; ++i) {
        const std::string eng = engine_text(raw[i]);
        ++tried;
        try {
          Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR,
                    fmt::format("execution plan (mode {}, config {}, {})", mname, i, eng));
          SET_ATTR(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
          SET_DESC(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, raw[i]);
          const cudnnStatus_t fst = cudnnBackendFinalize(plan.get());
          if (fst != CUDNN_STATUS_SUCCESS) {
            log += fmt::format("      config {} ({}): plan finalize -> {}\n", i, eng, status_text(fst));
            fell_back = true;
            continue;
          }
          int64_t ws = 0, n = 0;
          MOSAIC_CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                      CUDNN_TYPE_INT64, 1, &n, &ws),
                             "reading CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE of " + plan.name());
          log += fmt::format("      config {} ({}): plan finalize -> OK, workspace {} B\n", i, eng, ws);
          out.cfg = std::move(cfgs[i]);
          out.plan = std::move(plan);
          out.workspace = static_cast<size_t>(ws < 0 ? 0 : ws);
          out.summary = fmt::format("{}, heuristics mode {} config {} of {}", eng, mname, i, count);
          return true;
        } catch (const StatusError& e) {
          log += fmt::format("      config {} ({}): {}\n", i, eng, e.what());
          fell_back = true;
        }
      }
    } catch (const StatusError& e) {
      log += fmt::format("    heuristics mode {}: {}\n", mname, e.what());
      fell_back = true;
    }
  }
  log += fmt::format("    no engine config finalized ({} tried)\n", tried);
  return false;
}

const char* graph_text(CudnnAttention::Graph g) {
  switch (g) {
    case CudnnAttention::Graph::Unified:
      return "unified";
    case CudnnAttention::Graph::Composite:
      return "composite";
    default:
      return "auto";
  }
}

// Shapes cuDNN is known not to handle (or to handle wrongly); "" when none applies.
std::string known_unsupported(const Shape& s) {
  const size_t ver = cudnnGetVersion();
  if (ver < 90000) return fmt::format("needs cuDNN 9 (loaded {})", ver);
  if (ver == 91000 || ver == 91001)
    return "cuDNN 9.10.0/9.10.1 have known SDPA forward bugs (cudnn-frontend refuses them); use >= 9.10.2";
  if (s.kv_rows < 2) return "kv_rows == 1 is not supported by cuDNN SDPA (PyTorch refuses it too)";
  if (s.heads > 65535 || s.kv_heads > 65535) return "cuDNN SDPA supports at most 65535 heads";
  if (s.hd % 8 != 0 || s.hd > 256) return fmt::format("head dim {} (cuDNN needs a multiple of 8, <= 256)", s.hd);
  return "";
}

}  // namespace cudnn_detail

using namespace cudnn_detail;

struct CudnnAttention::Plan {
  bool supported = false;
  std::vector<Desc> descs;  // tensors, operations, operation graph: kept for the plan's lifetime
  Desc cfg;
  Desc plan;
  size_t workspace = 0;
  std::string summary;  // describe()
  std::string log;      // build_log()

  ~Plan() {
    plan.reset();
    cfg.reset();
    while (!descs.empty()) descs.pop_back();  // reverse order of creation
  }
};

CudnnAttention::CudnnAttention(cudaStream_t stream, Graph graph) : stream_(stream), graph_(graph) {
  if (const char* env = std::getenv("MOSAIC_CUDNN_SDPA"); env && graph_ == Graph::Auto) {
    if (std::strcmp(env, "unified") == 0)
      graph_ = Graph::Unified;
    else if (std::strcmp(env, "composite") == 0)
      graph_ = Graph::Composite;
    else if (std::strcmp(env, "auto") != 0 && env[0] != '\0')
      MOSAIC_FAIL("MOSAIC_CUDNN_SDPA={} is not one of unified, composite, auto", env);
  }
  if (const char* env = std::getenv("MOSAIC_CUDNN_VERBOSE")) verbose_ = env[0] != '\0' && env[0] != '0';
  cudnnHandle_t h = nullptr;
  MOSAIC_CUDNN_CHECK(cudnnCreate(&h), "creating the cuDNN handle (cudnnCreate; is there a GPU?)");
  handle_ = h;
  const cudnnStatus_t st = cudnnSetStream(h, stream_);
  if (st != CUDNN_STATUS_SUCCESS) {
    const std::string msg = status_text(st);
    cudnnDestroy(h);
    handle_ = nullptr;
    MOSAIC_FAIL("cuDNN error {} while binding the handle to the stream (cudnnSetStream)", msg);
  }
}

CudnnAttention::~CudnnAttention() {
  plans_.clear();  // every descriptor before the handle they were built with
  if (handle_) cudnnDestroy(handle_);
}

std::string CudnnAttention::version() {
  const size_t v = cudnnGetVersion();
  return fmt::format("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
}

bool CudnnAttention::unified_available() {
#if CUDNN_VERSION >= 91301
  return cudnnGetVersion() >= 91301;
#else
  return false;
#endif
}

namespace {
void check_shape(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd) {
  MOSAIC_CHECK(rows >= 0 && kv_rows > 0, "cuDNN attention: rows {} and kv_rows {} must be >= 0 and > 0", rows, kv_rows);
  MOSAIC_CHECK(heads > 0 && kv_heads > 0 && heads % kv_heads == 0,
               "cuDNN attention: heads {} must be a positive multiple of kv_heads {}", heads, kv_heads);
  MOSAIC_CHECK(hd > 0, "cuDNN attention: head dim {} must be positive", hd);
}
}  // namespace

CudnnAttention::Plan& CudnnAttention::plan(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd,
                                           float scale) {
  check_shape(rows, kv_rows, heads, kv_heads, hd);
  MOSAIC_CHECK(rows > 0, "cuDNN attention: no plan for rows = 0 (nothing to run)");
  const Key key{rows, kv_rows, heads, kv_heads, hd, std::bit_cast<uint32_t>(scale)};
  if (auto it = plans_.find(key); it != plans_.end()) return *it->second;

  const auto t0 = std::chrono::steady_clock::now();
  const Shape s{rows, kv_rows, heads, kv_heads, hd};
  auto p = std::make_unique<Plan>();
  const std::string shape_text =
      fmt::format("rows {} kv_rows {} heads {}/{} hd {}", rows, kv_rows, heads, kv_heads, hd);
  p->log = fmt::format("cuDNN {} (headers {}) attention plan for {}:\n", version(), CUDNN_VERSION, shape_text);
  bool noteworthy = false;  // something failed on the way: print the log even when not verbose

  std::vector<Graph> order;
  if (graph_ == Graph::Auto) {
    if (unified_available()) order.push_back(Graph::Unified);
    order.push_back(Graph::Composite);
  } else {
    order.push_back(graph_);
  }

  const std::string why = known_unsupported(s);
  if (!why.empty()) {
    p->summary = "unsupported: " + why;
    p->log += "  " + p->summary + "\n";
    order.clear();
    noteworthy = true;
  }

  std::string real_errors;  // real errors of graphs that an Auto build fell back from
  for (size_t gi = 0; gi < order.size(); ++gi) {
    const Graph g = order[gi];
    const bool last = gi + 1 == order.size();
    p->log += fmt::format("  graph {}:\n", graph_text(g));
    if (g == Graph::Unified && !unified_available()) {
      p->log += fmt::format("    unavailable (needs cuDNN >= 9.13.1 headers and library; headers {}, library {})\n",
                            CUDNN_VERSION, version());
      noteworthy = true;
      continue;
    }
    try {
      Builder b(static_cast<cudnnHandle_t>(handle_));
      if (g == Graph::Unified)
        build_unified(b, s);
      else
        build_composite(b, s);
      cudnnBackendDescriptor_t op_graph = b.operation_graph(graph_text(g));
      int64_t engines = -1, n = 0;
      if (cudnnBackendGetAttribute(op_graph, CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT, CUDNN_TYPE_INT64, 1, &n,
                                   &engines) != CUDNN_STATUS_SUCCESS)
        engines = -1;
      p->log += fmt::format("    operation graph finalized ({} engines in the library)\n", engines);
      Built built;
      bool fell_back = false;
      const bool ok = find_plan(static_cast<cudnnHandle_t>(handle_), op_graph, built, p->log, fell_back);
      noteworthy = noteworthy || fell_back;
      if (ok) {
        p->supported = true;
        p->descs = b.take();
        p->cfg = std::move(built.cfg);
        p->plan = std::move(built.plan);
        p->workspace = built.workspace;
        p->summary = fmt::format("graph {}, {}, workspace {} B", graph_text(g), built.summary, built.workspace);
        break;
      }
      p->summary = fmt::format("unsupported: no engine for graph {}", graph_text(g));
      noteworthy = true;
    } catch (const StatusError& e) {
      noteworthy = true;
      if (not_supported(e.status)) {
        p->log += fmt::format("    not supported: {}\n", e.what());
        p->summary = fmt::format("unsupported: graph {}: {}", graph_text(g), e.what());
      } else {
        p->log += fmt::format("    ERROR: {}\n", e.what());
        if (last) {
          std::fprintf(stderr, "[mosaic cudnn] %s", p->log.c_str());
          MOSAIC_FAIL("cuDNN attention ({}), graph {}: {}{}", shape_text, graph_text(g), e.what(), real_errors);
        }
        real_errors += fmt::format("; before that, graph {} failed: {}", graph_text(g), e.what());
      }
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  p->summary += fmt::format(", plan built in {:.1f} ms", ms);
  p->log += "  => " + p->summary + "\n";
  if (verbose_ || noteworthy) std::fprintf(stderr, "[mosaic cudnn] %s", p->log.c_str());
  return *plans_.emplace(key, std::move(p)).first->second;
}

size_t CudnnAttention::workspace_bytes(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd, float scale) {
  check_shape(rows, kv_rows, heads, kv_heads, hd);
  if (rows == 0) return 0;
  const Plan& p = plan(rows, kv_rows, heads, kv_heads, hd, scale);
  return p.supported ? p.workspace : SIZE_MAX;
}

std::string CudnnAttention::describe(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd, float scale) {
  return plan(rows, kv_rows, heads, kv_heads, hd, scale).summary;
}

std::string CudnnAttention::build_log(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd, float scale) {
  return plan(rows, kv_rows, heads, kv_heads, hd, scale).log;
}

bool CudnnAttention::run(const void* q, int64_t rows, const void* k, const void* v, int64_t kv_rows, int heads,
                         int kv_heads, int hd, float scale, void* out, void* workspace, size_t workspace_bytes) {
  check_shape(rows, kv_rows, heads, kv_heads, hd);
  if (rows == 0) return true;
  Plan& p = plan(rows, kv_rows, heads, kv_heads, hd, scale);
  if (!p.supported) return false;
  const auto misaligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 != 0; };
  MOSAIC_CHECK(q && k && v && out, "cuDNN attention: null pointer (q {}, k {}, v {}, out {})", q, k, v,
               static_cast<const void*>(out));
  MOSAIC_CHECK(!misaligned(q) && !misaligned(k) && !misaligned(v) && !misaligned(out),
               "cuDNN attention: q {}, k {}, v {}, out {} must be 16-byte aligned (the tensors are declared so)", q,
               k, v, static_cast<const void*>(out));
  MOSAIC_CHECK(workspace_bytes >= p.workspace && (p.workspace == 0 || workspace),
               "cuDNN attention ({}): the plan needs {} B of workspace, got {} B at {}", p.summary, p.workspace,
               workspace_bytes, workspace);

  // By-value scalar: cuDNN reads it from host memory while launching (the frontend passes its
  // cached host copy the same way), so a local is enough.
  float scale_value = scale;
  void* ptrs[5] = {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), out, &scale_value};
  const int64_t uids[5] = {kUidQ, kUidK, kUidV, kUidO, kUidScale};
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  SET_ATTR(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 5, ptrs);
  SET_ATTR(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 5, uids);
  SET_ATTR(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  pack.finalize();
  MOSAIC_CUDNN_CHECK(cudnnBackendExecute(static_cast<cudnnHandle_t>(handle_), p.plan.get(), pack.get()),
                     fmt::format("executing the plan ({}; rows {} kv_rows {} heads {}/{} hd {})", p.summary, rows,
                                 kv_rows, heads, kv_heads, hd));
  return true;
}

}  // namespace mosaic::cuda
