#include "src/backend/gpu/blas.h"

#if !defined(DS_EMU) && !defined(DS_GPU_HIP)
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <tuple>
#endif

namespace ds::backend::gpu {

#if defined(DS_EMU) || defined(DS_GPU_HIP)

// No BLAS under emulation; Debian's ROCm ships neither rocBLAS nor hipBLASLt.
bool blas_available(Runtime&) { return false; }
bool blas_gemm(Runtime&, DType, const void*, int64_t, DType, const void*, const float*, void*, int64_t, int64_t,
               int64_t, int64_t) {
  return false;
}

#else

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // what cuBLAS recommends for Hopper

[[noreturn]] void die(cublasStatus_t s, const char* call, const std::string& shapes) {
  std::fprintf(stderr, "deltaserve: fatal: %s [%s]: %s\n", call, shapes.c_str(), cublasLtGetStatusName(s));
  std::abort();
}

// Row-major y[m][n] = x[m][k] W[n][k]^T is, column-major, Y(n x m) = op(Wc)^T Xc with Wc = W viewed as
// k x n (ld k) and Xc = x viewed as k x m (ld ldx): A = W transposed, B = x as is, D = y (ld ldy).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;  // false: cuBLASLt has no algorithm for this case (cached too)
};

using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, bool>;

struct Blas {
  Runtime* rt = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<Key, Plan> plans;
  ~Blas() {
    for (auto& [key, p] : plans) {
      if (p.a) cublasLtMatrixLayoutDestroy(p.a);
      if (p.b) cublasLtMatrixLayoutDestroy(p.b);
      if (p.d) cublasLtMatrixLayoutDestroy(p.d);
      if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    }
    if (handle) cublasLtDestroy(handle);
    rt->free(workspace);
  }
};

bool cuda_type(DType t, cudaDataType_t* out) {
  switch (t) {
    case DType::kF32: *out = CUDA_R_32F; return true;
    case DType::kF16: *out = CUDA_R_16F; return true;
    case DType::kBF16: *out = CUDA_R_16BF; return true;
    default: return false;
  }
}

// The runtime's BLAS state; null when cuBLASLt cannot be opened (reported once).
Blas* blas_of(Runtime& rt) {
  std::shared_ptr<void>& slot = rt.blas_slot();
  if (slot) {
    auto* b = static_cast<Blas*>(slot.get());
    return b->handle ? b : nullptr;
  }
  auto b = std::make_shared<Blas>();
  b->rt = &rt;
  if (cublasStatus_t s = cublasLtCreate(&b->handle); s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "deltaserve: cuBLASLt unavailable (%s); dense linears use the fallback kernel\n",
                 cublasLtGetStatusName(s));
    b->handle = nullptr;
    slot = b;  // remembered: not retried (or reported) on every linear
    return nullptr;
  }
  auto ws = rt.malloc(kWorkspaceBytes, "cuBLASLt workspace");
  if (ws) b->workspace = *ws;  // without one, cuBLASLt still runs, with fewer algorithms
  slot = b;
  return b.get();
}

Plan make_plan(Blas& b, cudaDataType_t t, bool bias, int64_t ldx, int64_t ldy, int64_t m, int64_t n, int64_t k) {
  Plan p;
  const cudaDataType_t f32 = CUDA_R_32F;
  if (cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, f32) != CUBLAS_STATUS_SUCCESS) return p;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
  cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
  if (bias) {
    const cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = CUDA_R_32F;  // our biases are fp32 whatever the activation type
    cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
    cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type);
  }
  if (cublasLtMatrixLayoutCreate(&p.a, t, k, n, k) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatrixLayoutCreate(&p.b, t, k, m, ldx) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatrixLayoutCreate(&p.d, t, n, m, ldy) != CUBLAS_STATUS_SUCCESS)
    return p;
  cublasLtMatmulPreference_t pref = nullptr;
  if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return p;
  const size_t ws = b.workspace ? kWorkspaceBytes : 0;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulHeuristicResult_t r{};
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(b.handle, p.desc, p.a, p.b, p.d, p.d, pref, 1, &r, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s == CUBLAS_STATUS_SUCCESS && found > 0) {
    p.algo = r.algo;
    p.ok = true;
  }
  return p;
}

}  // namespace

bool blas_available(Runtime& rt) { return blas_of(rt) != nullptr; }

bool blas_gemm(Runtime& rt, DType act, const void* x, int64_t ldx, DType wt, const void* w, const float* bias,
               void* y, int64_t ldy, int64_t m, int64_t n, int64_t k) {
  cudaDataType_t t;
  // cuBLASLt wants A, B and D of one type here; mixed cases (fp32 activations, bf16 weights) fall back.
  if (act != wt || !cuda_type(act, &t) || m <= 0 || n <= 0 || k <= 0) return false;
  Blas* b = blas_of(rt);
  if (!b) return false;
  const Key key{static_cast<int>(act), static_cast<int>(wt), ldx, ldy, m, n, k, bias != nullptr};
  auto it = b->plans.find(key);
  if (it == b->plans.end()) it = b->plans.emplace(key, make_plan(*b, t, bias != nullptr, ldx, ldy, m, n, k)).first;
  Plan& p = it->second;
  if (!p.ok) return false;
  if (bias) cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t s = cublasLtMatmul(b->handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &p.algo,
                                          b->workspace, b->workspace ? kWorkspaceBytes : 0,
                                          static_cast<cudaStream_t>(rt.stream()));
  if (s != CUBLAS_STATUS_SUCCESS)
    die(s, "cublasLtMatmul", "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + " " +
                                 dtype_name(act));
  return true;
}

#endif

}  // namespace ds::backend::gpu
