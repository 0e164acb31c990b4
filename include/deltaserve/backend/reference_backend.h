// The reference backend: every op as the plainest loop over the scalar kernels, one thread, and
// linear layers computed straight from the checkpoint's GPTQ / dense tensors by the documented
// formula (no repacking). It exists to show that a backend is the Backend interface alone, and as
// an independent oracle for the optimised backends (tests/runtime/reference_backend_test.cpp runs
// every fixture through both). Slow by design.
#pragma once

#include <memory>

#include "deltaserve/backend/backend.h"

namespace ds::backend {

std::shared_ptr<Backend> make_reference_backend();

}  // namespace ds::backend
