// Launcher of the read-bandwidth kernel (kernels/gpu/bandwidth.cu).
#pragma once

#include <cstddef>

namespace ds::gpu {

// Reads `bytes` (a multiple of 16, 16-byte aligned) once; out holds `blocks` floats.
void launch_read_bandwidth(const void* data, size_t bytes, float* out, int blocks, void* stream);

}  // namespace ds::gpu
