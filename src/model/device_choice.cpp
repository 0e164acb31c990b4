#include "deltaserve/model/device_choice.h"

namespace ds::model {

const char* device_kind_name(DeviceKind k) {
  switch (k) {
    case DeviceKind::kAuto: return "auto";
    case DeviceKind::kCuda: return "cuda";
    case DeviceKind::kRocm: return "rocm";
    case DeviceKind::kCpu: return "cpu";
  }
  return "?";
}

Result<DeviceKind> parse_device(const std::string& s) {
  if (s == "auto") return DeviceKind::kAuto;
  if (s == "cuda") return DeviceKind::kCuda;
  if (s == "rocm" || s == "hip") return DeviceKind::kRocm;
  if (s == "cpu") return DeviceKind::kCpu;
  return invalid_argument("argument --device: invalid choice: '" + s + "' (choose from 'auto', 'cuda', 'rocm', 'cpu')");
}

Result<DeviceChoice> choose_device(DeviceKind requested, const DeviceAvailability& a) {
  DeviceChoice c;
  switch (requested) {
    case DeviceKind::kCpu:
      c.kind = DeviceKind::kCpu;
      return c;
    case DeviceKind::kCuda:
    case DeviceKind::kRocm: {
      const bool cuda = requested == DeviceKind::kCuda;
      const char* name = cuda ? "CUDA" : "ROCm";
      if (!(cuda ? a.cuda_built : a.rocm_built))
        return unsupported(std::string("--device ") + device_kind_name(requested) + ": this deltaserve was built without the " +
                           name + " backend (rebuild with -D" + (cuda ? "DS_CUDA" : "DS_HIP") +
                           "=ON), or use --device cpu");
      if ((cuda ? a.cuda_devices : a.rocm_devices) <= 0)
        return not_found(std::string("--device ") + device_kind_name(requested) + ": no " + name +
                         " device found (is the driver loaded? " +
                         (cuda ? "CUDA_VISIBLE_DEVICES" : "HIP_VISIBLE_DEVICES") + " set to none?)");
      c.kind = requested;
      return c;
    }
    case DeviceKind::kAuto:
      c.kind = a.cuda_devices > 0 ? DeviceKind::kCuda : a.rocm_devices > 0 ? DeviceKind::kRocm : DeviceKind::kCpu;
      c.log_line = std::string("Automatically detected platform ") + device_kind_name(c.kind) + ".";
      if (c.kind == DeviceKind::kCpu)
        c.log_line += a.cuda_built || a.rocm_built ? " (no GPU device found)" : " (this build has no GPU backend)";
      return c;
  }
  return c;
}

}  // namespace ds::model
