// Helpers the GPU backend's op files share: shape descriptions for error messages and the fatal
// exit of an op (ops have no error channel by contract: a shape the kernels cannot run, or a failed
// launch, ends the process naming the op and its shapes).
#pragma once

#include <cstddef>
#include <string>

#include "deltaserve/backend/backend.h"

namespace ds::backend::gpu {

// "rows x cols[/ld L] DTYPE"
std::string dims(const Act& a);

[[noreturn]] void op_fail(const char* op, const std::string& what);

// Element i of a host array of f32/bf16/f16 (biases at load).
inline float host_float(DType dt, const void* p, int64_t i) {
  switch (dt) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return 0.0f;
  }
}

inline size_t align256(size_t x) { return (x + 255) & ~size_t{255}; }

}  // namespace ds::backend::gpu
