// The one place the commands get a model: on the CPU backend or on the GPU backend this binary was
// built with (DS_HAVE_CUDA / DS_HAVE_HIP, set when CMake links ds_backend_cuda / ds_backend_hip;
// DS_HAVE_EMU: the emulated GPU, as `cuda`, in the test binary deltaserve_emu), by
// `--device auto|cuda|rocm|cpu`. Lives in the CLI so that ds_model never depends on a GPU library.
#pragma once

#include <memory>
#include <string>

#include "deltaserve/core/status.h"
#include "deltaserve/model/device_choice.h"
#include "deltaserve/model/qwen35.h"

namespace ds::cli {

// What this binary was built with and what its GPU runtime sees now.
model::DeviceAvailability device_availability();

// The backend `device` resolves to: the CPU backend, or the GPU backend with `dtype` activations.
// Logs the device auto picked, as vLLM does.
Result<std::shared_ptr<backend::Backend>> create_backend(const model::ModelDesc& desc, const std::string& device,
                                                          const std::string& dtype);

// device: "auto", "cuda", "rocm" or "cpu" (errors name the flag). dtype: vLLM's --dtype ("auto":
// the checkpoint's torch_dtype) for GPU activations; the CPU backend computes in fp32 regardless.
// Logs the device auto picked, as vLLM does.
Result<std::unique_ptr<model::Qwen35Model>> create_model_for_device(const model::ModelDesc& desc,
                                                                   const model::ModelOptions& options,
                                                                   const std::string& device,
                                                                   const std::string& dtype = "auto");

// Memory of the device `device` resolves to, in GiB (inspect's fit); 0 when that is the CPU.
Result<double> device_memory_gib(const std::string& device);

}  // namespace ds::cli
