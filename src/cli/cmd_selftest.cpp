// `deltaserve selftest`: runs every GPU kernel on the device on random inputs against the CPU
// backend and prints a table (op, shape, max error, tolerance, µs); exits 1 naming the failing ops.
#include <cstdio>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "selftest_cli.h"

#if defined(DS_HAVE_CUDA) || defined(DS_HAVE_HIP)
#include "src/backend/gpu/selftest.h"
#endif

namespace ds::cli {

namespace {

constexpr const char* kUsage =
    "usage: deltaserve selftest [--device auto|cuda|rocm] [--dtype all|float32|bfloat16|float16]\n"
    "                           [--only OP] [--repeats N]\n"
    "Runs each GPU kernel on the device on random inputs of model-like shapes and compares it with\n"
    "the CPU backend. --dtype: activation type (default all: float32, then bfloat16 and float16).\n"
    "--only: ops whose name contains OP. --repeats: timed calls per op (default 20).\n";

}  // namespace

int run_selftest_command(const std::string& device, const std::string& dtype, const std::string& only, int repeats) {
#if defined(DS_HAVE_CUDA) || defined(DS_HAVE_HIP)
  if (device != "auto" && device != "cuda" && device != "rocm") {
    std::fprintf(stderr, "deltaserve selftest: --device must be auto, cuda or rocm (got '%s')\n", device.c_str());
    return 2;
  }
#if defined(DS_HAVE_CUDA)
  if (device == "rocm") {
    std::fprintf(stderr, "deltaserve selftest: this binary was built with the CUDA backend, not ROCm\n");
    return 2;
  }
#else
  if (device == "cuda") {
    std::fprintf(stderr, "deltaserve selftest: this binary was built with the ROCm backend, not CUDA\n");
    return 2;
  }
#endif
  std::vector<DType> dtypes;
  if (dtype == "all") dtypes = {DType::kF32, DType::kBF16, DType::kF16};
  else if (dtype == "float32" || dtype == "float") dtypes = {DType::kF32};
  else if (dtype == "bfloat16") dtypes = {DType::kBF16};
  else if (dtype == "float16" || dtype == "half") dtypes = {DType::kF16};
  else {
    std::fprintf(stderr, "deltaserve selftest: --dtype must be all, float32, bfloat16 or float16 (got '%s')\n", dtype.c_str());
    return 2;
  }
  std::vector<std::string> failed;
  for (DType dt : dtypes) {
    auto be = backend::gpu::make_gpu_backend(0, {dt});
    if (!be.is_ok()) {
      std::fprintf(stderr, "deltaserve selftest: %s\n", be.status().message().c_str());
      return 1;
    }
    auto& gpu = static_cast<backend::gpu::GpuBackend&>(**be);
    backend::gpu::SelftestOptions opt;
    opt.only = only;
    opt.timed_repeats = repeats;
    std::printf("selftest on %s\n", gpu.name().c_str());
    const auto rows = backend::gpu::run_selftest(gpu, opt);
    backend::gpu::print_selftest(rows, stdout);
    for (const auto& r : rows)
      if (!r.ok) failed.push_back(r.op + " (" + dtype_name(dt) + ", " + r.shape + ")");
  }
  if (!failed.empty()) {
    std::fprintf(stderr, "deltaserve selftest: FAILED:");
    for (const auto& f : failed) std::fprintf(stderr, " %s;", f.c_str());
    std::fprintf(stderr, "\n");
    return 1;
  }
  std::printf("selftest: every op agrees with the CPU backend\n");
  return 0;
#else
  (void)dtype;
  (void)only;
  (void)repeats;
  std::fprintf(stderr,
               "deltaserve selftest: this binary was built without a GPU backend (configure with -DDS_CUDA=ON or "
               "-DDS_HIP=ON); --device %s has nothing to test\n",
               device.c_str());
  return 1;
#endif
}

namespace {

int run(const std::vector<std::string>& args) {
  std::string device = "auto", dtype = "all", only;
  int repeats = 20;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string rep;
    if (a == "-h" || a == "--help") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "--device" && value(&device)) {
    } else if (a == "--dtype" && value(&dtype)) {
    } else if (a == "--only" && value(&only)) {
    } else if (a == "--repeats" && value(&rep)) {
      try {
        repeats = std::stoi(rep);
      } catch (...) {
        repeats = -1;
      }
      if (repeats < 0 || repeats > 10000) {
        std::fprintf(stderr, "deltaserve selftest: --repeats must be an integer in 0..10000 (got '%s')\n", rep.c_str());
        return 2;
      }
    } else {
      std::fprintf(stderr, "deltaserve selftest: unknown or incomplete argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  return run_selftest_command(device, dtype, only, repeats);
}

}  // namespace

DS_COMMAND(selftest, "selftest", "check every GPU kernel against the CPU backend on this machine's GPU", run);

}  // namespace ds::cli
