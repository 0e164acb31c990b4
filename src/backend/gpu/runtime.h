// The device runtime under the GPU backend: one device's memory, streams, events and copies, with
// the same interface over CUDA, HIP and the CPU emulation (DS_EMU: device memory is host memory and
// kernels run through kernels/emu). Every call is checked; a failure names the call, its sizes and
// the device's free memory. Nothing above src/backend/gpu sees a vendor type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "deltaserve/core/status.h"

namespace ds::backend::gpu {

enum class Vendor { kCuda, kHip, kEmu };
const char* vendor_name(Vendor v);  // "cuda", "rocm", "emu"

// The vendor this library was compiled for (one per build of src/backend/gpu).
Vendor compiled_vendor();

struct DeviceInfo {
  int index = 0;
  std::string name;           // "NVIDIA H200", "AMD Instinct MI100", "emulated (host)"
  std::string arch;           // "sm_90", "gfx908", "emu"
  int multiprocessors = 0;    // SMs / CUs
  int warp_size = 32;
  size_t total_bytes = 0, free_bytes = 0;
  size_t max_smem_per_block = 0;  // opt-in maximum dynamic shared memory
};

// Number of usable devices; 0 when the driver or runtime is missing (never fails).
int device_count();

using StreamHandle = void*;

// A captured stream, replayable (Runtime::end_capture).
class Graph {
 public:
  virtual ~Graph() = default;
};  // cudaStream_t / hipStream_t / nullptr under emulation

class Runtime {
 public:
  // Opens device `index` and creates the compute stream.
  static Result<std::unique_ptr<Runtime>> open(int index);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const DeviceInfo& info() const { return info_; }
  Result<DeviceInfo> query_memory() const;  // info() with current free/total bytes
  StreamHandle stream() const { return stream_; }

  // Device memory. `what` names the user in errors ("layer 3 experts", "KV cache").
  Result<void*> malloc(size_t bytes, const std::string& what);
  void free(void* p);
  // Page-locked host memory for staging.
  Result<void*> host_alloc(size_t bytes);
  void host_free(void* p);

  // Copies and fills on the compute stream (async; synchronize() waits).
  Status copy_h2d(void* dst, const void* src, size_t bytes);
  Status copy_d2h(void* dst, const void* src, size_t bytes);
  Status copy_d2d(void* dst, const void* src, size_t bytes);
  Status memset(void* dst, int value, size_t bytes);
  Status synchronize();

  // Events on the compute stream (timing in selftest and bench).
  Result<void*> event_record();
  Result<float> event_elapsed_ms(void* start, void* end);  // synchronises on end
  Status event_synchronize(void* e);                         // the host waits for the event (staging)
  void event_destroy(void* e);

  // Stream capture: between begin_capture and end_capture nothing the stream is given runs; it is
  // recorded into a graph (a CUDA/HIP graph, or under emulation the list of launches, copies and
  // fills), which launch_graph runs again with the arguments it was captured with. Nothing may
  // allocate, synchronise or copy to the host while capturing (the emulation refuses each).
  Status begin_capture();
  Result<std::unique_ptr<Graph>> end_capture();
  Status launch_graph(const Graph& g);
  bool capturing() const;

  // After a kernel launch: the launch error (if any) with the op's description.
  Status check_launch(const char* op, const std::string& shapes) const;

  // Live device allocations by `what`, largest first ("KV cache" -> bytes): what OOM errors list.
  std::vector<std::pair<std::string, size_t>> allocation_tally() const;
  // A slot blas.cpp keeps its per-runtime BLAS handle and workspace in (created lazily, released
  // first in ~Runtime, while the stream and device are still alive).
  std::shared_ptr<void>& blas_slot();

 private:
  struct Impl;  // allocation tally, vendor state (runtime.cpp)
  Runtime();
  DeviceInfo info_;
  StreamHandle stream_ = nullptr;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds::backend::gpu
