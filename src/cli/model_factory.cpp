#include "model_factory.h"

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/core/log.h"
#include "deltaserve/dist/communicator.h"

#if defined(DS_HAVE_CUDA) || defined(DS_HAVE_HIP) || defined(DS_HAVE_EMU)
#define DS_HAVE_GPU 1
#include "src/backend/gpu/gpu_backend.h"
#endif

namespace ds::cli {

model::DeviceAvailability device_availability() {
  model::DeviceAvailability a;
#if defined(DS_HAVE_CUDA) || defined(DS_HAVE_EMU)  // the emulated GPU answers to --device cuda
  a.cuda_built = true;
  a.cuda_devices = backend::gpu::device_count();
#elif defined(DS_HAVE_HIP)
  a.rocm_built = true;
  a.rocm_devices = backend::gpu::device_count();
#endif
  return a;
}

namespace {

#if defined(DS_HAVE_GPU)
Result<DType> activation_dtype(const std::string& flag, const std::string& torch_dtype) {
  const std::string d = flag == "auto" ? torch_dtype : flag;
  if (d == "bfloat16" || d.empty()) return DType::kBF16;  // Qwen3.5 checkpoints are bf16
  if (d == "float16" || d == "half") return DType::kF16;
  if (d == "float32" || d == "float") return DType::kF32;
  return invalid_argument("--dtype " + flag + ": the GPU backend computes in bfloat16, float16 or float32");
}
#endif

}  // namespace

Result<std::shared_ptr<backend::Backend>> create_backend(const model::ModelDesc& desc, const std::string& device,
                                                          const std::string& dtype) {
  DS_ASSIGN_OR_RETURN(model::DeviceKind requested, model::parse_device(device));
  DS_ASSIGN_OR_RETURN(model::DeviceChoice choice, model::choose_device(requested, device_availability()));
  if (!choice.log_line.empty()) {
    DS_INFO << choice.log_line;
  }
  if (choice.kind == model::DeviceKind::kCpu)
    return std::shared_ptr<backend::Backend>(std::make_shared<backend::CpuBackend>());
#if defined(DS_HAVE_GPU)
  backend::gpu::GpuOptions go;
  DS_ASSIGN_OR_RETURN(go.activation_dtype, activation_dtype(dtype, desc.config.torch_dtype));
  return backend::gpu::make_gpu_backend(0, go);
#else
  (void)desc;
  (void)dtype;
  return internal_error("no GPU backend in this build");  // choose_device refused already
#endif
}

Result<std::unique_ptr<model::Qwen35Model>> create_model_for_device(const model::ModelDesc& desc,
                                                                   const model::ModelOptions& options,
                                                                   const std::string& device,
                                                                   const std::string& dtype) {
  DS_ASSIGN_OR_RETURN(std::shared_ptr<backend::Backend> be, create_backend(desc, device, dtype));
  return model::Qwen35Model::create(desc, std::move(be), dist::single_rank(), options);
}

Result<double> device_memory_gib(const std::string& device) {
  DS_ASSIGN_OR_RETURN(model::DeviceKind requested, model::parse_device(device));
  DS_ASSIGN_OR_RETURN(model::DeviceChoice choice, model::choose_device(requested, device_availability()));
  if (choice.kind == model::DeviceKind::kCpu) return 0.0;
#if defined(DS_HAVE_GPU)
  DS_ASSIGN_OR_RETURN(std::unique_ptr<backend::gpu::Runtime> rt, backend::gpu::Runtime::open(0));
  return static_cast<double>(rt->info().total_bytes) / (1024.0 * 1024.0 * 1024.0);
#else
  return 0.0;
#endif
}

}  // namespace ds::cli
