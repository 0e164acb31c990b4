// The run-time ISA dispatch: which table of op variants (scalar reference, AVX2, AVX-512) runs.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "deltaserve/core/dtype.h"
#include "deltaserve/kernels/cpu.h"
#include "kernels/cpu/scalar.h"

namespace ds::kernels {

namespace avx2 {
extern const CpuKernels kTable;
}
namespace avx512 {
extern const CpuKernels kTable;
}

namespace {

const CpuKernels kScalarTable = {CpuIsa::kScalar, scalar::linear_rows_scalar, scalar::gdn_recurrent_scalar,
                                 scalar::attention_head_scalar};

}  // namespace

bool cpu_isa_supported(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return true;
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case CpuIsa::kAvx512:
      return cpu_isa_supported(CpuIsa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx512bf16");
  }
  return false;
}

CpuIsa detect_cpu_isa() {
  CpuIsa cap = CpuIsa::kAvx512;
  if (const char* env = std::getenv("DS_CPU_ISA")) {
    if (!std::strcmp(env, "scalar")) cap = CpuIsa::kScalar;
    else if (!std::strcmp(env, "avx2")) cap = CpuIsa::kAvx2;
  }
  for (CpuIsa isa : {CpuIsa::kAvx512, CpuIsa::kAvx2})
    if (static_cast<int>(isa) <= static_cast<int>(cap) && cpu_isa_supported(isa)) return isa;
  return CpuIsa::kScalar;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
  }
  return "?";
}

const CpuKernels& cpu_kernels(CpuIsa isa) {
  if (isa == CpuIsa::kAvx512 && cpu_isa_supported(isa)) return avx512::kTable;
  if (isa != CpuIsa::kScalar && cpu_isa_supported(CpuIsa::kAvx2)) return avx2::kTable;
  return kScalarTable;
}

}  // namespace ds::kernels
