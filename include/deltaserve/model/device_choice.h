// Which backend a command runs on: `--device auto|cuda|rocm|cpu` (vLLM's --device; auto picks a GPU
// when this binary has a GPU backend and a device is present, as vLLM's platform detection does).
// Pure logic over what the binary was built with and what the runtime found, so it is testable
// without a GPU; the CLI's create_model_for_device (src/cli/model_factory.h) acts on the choice.
#pragma once

#include <string>

#include "deltaserve/core/status.h"

namespace ds::model {

enum class DeviceKind { kAuto, kCuda, kRocm, kCpu };
const char* device_kind_name(DeviceKind k);  // "auto", "cuda", "rocm", "cpu"

// "auto", "cuda", "rocm" (also "hip"), "cpu"; anything else is an invalid_argument naming the choices.
Result<DeviceKind> parse_device(const std::string& s);

struct DeviceAvailability {
  bool cuda_built = false, rocm_built = false;  // backends linked into this binary
  int cuda_devices = 0, rocm_devices = 0;        // devices their runtimes see (0 when not built)
};

struct DeviceChoice {
  DeviceKind kind = DeviceKind::kCpu;  // never kAuto
  std::string log_line;                // "Automatically detected platform cuda." for auto
};

// A GPU kind that was not built, or has no device, is an error saying which and what to do.
Result<DeviceChoice> choose_device(DeviceKind requested, const DeviceAvailability& a);

}  // namespace ds::model
