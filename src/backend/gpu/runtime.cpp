// The device runtime over CUDA, HIP or the CPU emulation. One source: GPU(x) names the vendor's call
// (cudaMalloc / hipMalloc / emuMalloc); the emulation is a small shim (runtime_emu.h) with the same
// names over host memory, so every path through the checks and the allocation tally is shared.
#include "src/backend/gpu/runtime.h"


#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>

#if defined(DS_EMU)
#include "src/backend/gpu/runtime_emu.h"
#define GPU(x) emu##x
#elif defined(DS_GPU_HIP)
#include <hip/hip_runtime_api.h>
#define GPU(x) hip##x
using hipDeviceProp = hipDeviceProp_t;
#define hipMallocHost(p, n) hipHostMalloc(p, n, 0)
#define hipFreeHost hipHostFree
#else
#include <cuda_runtime_api.h>
#define GPU(x) cuda##x
using cudaDeviceProp_ = cudaDeviceProp;
#endif

namespace ds::backend::gpu {

#if defined(DS_GPU_HIP) && !defined(DS_EMU)
using hipDeviceProp_ = hipDeviceProp_t;
#endif

namespace {

std::string gib(size_t bytes) {
  char b[48];
  if (bytes >= (size_t{1} << 30)) std::snprintf(b, sizeof b, "%.2f GiB", bytes / 1073741824.0);
  else if (bytes >= (size_t{1} << 20)) std::snprintf(b, sizeof b, "%.1f MiB", bytes / 1048576.0);
  else std::snprintf(b, sizeof b, "%zu bytes", bytes);
  return b;
}

Status failed(GPU(Error_t) e, const char* call, const std::string& detail) {
  return internal_error(std::string(call) + "(" + detail + ") failed: " + GPU(GetErrorName)(e) + " (" +
                        GPU(GetErrorString)(e) + ")");
}

#define DS_GPU_TRY(expr, detail)                                       \
  do {                                                                 \
    GPU(Error_t) ds_gpu_err = (expr);                                  \
    if (ds_gpu_err != GPU(Success)) return failed(ds_gpu_err, #expr, detail); \
  } while (0)

std::string ptrs(const void* d, const void* s, size_t n) {
  char b[96];
  std::snprintf(b, sizeof b, "dst %p, src %p, %zu bytes", d, s, n);
  return b;
}

}  // namespace

struct Runtime::Impl {
  std::mutex mu;
  bool capturing = false;
#if defined(DS_EMU)
  std::vector<std::function<void()>> captured;
#endif
  std::unordered_map<void*, std::pair<std::string, size_t>> live;  // pointer -> (what, bytes)
  std::map<std::string, size_t> by_what;
  std::shared_ptr<void> blas;
  bool sync_after_launch = false;  // DS_GPU_SYNC=1: async kernel faults surface at the op that caused them
};

const char* vendor_name(Vendor v) { return v == Vendor::kCuda ? "cuda" : v == Vendor::kHip ? "rocm" : "emu"; }

Vendor compiled_vendor() {
#if defined(DS_EMU)
  return Vendor::kEmu;
#elif defined(DS_GPU_HIP)
  return Vendor::kHip;
#else
  return Vendor::kCuda;
#endif
}

int device_count() {
  int n = 0;
  if (GPU(GetDeviceCount)(&n) != GPU(Success)) {
    (void)GPU(GetLastError)();  // "no driver" must not stick to the next call
    return 0;
  }
  return n;
}

Runtime::Runtime() : impl_(std::make_unique<Impl>()) {}

Result<std::unique_ptr<Runtime>> Runtime::open(int index) {
  const int n = compiled_vendor() == Vendor::kEmu ? 1 : device_count();
  if (index < 0 || index >= n)
    return not_found(std::string("no ") + vendor_name(compiled_vendor()) + " device " + std::to_string(index) + " (" +
                     std::to_string(n) + " found)");
  std::unique_ptr<Runtime> rt(new Runtime());
  const std::string at = "device " + std::to_string(index);
  DS_GPU_TRY(GPU(SetDevice)(index), at);
  GPU(DeviceProp_) p{};
  DS_GPU_TRY(GPU(GetDeviceProperties)(&p, index), at);
  DeviceInfo& d = rt->info_;
  d.index = index;
  d.name = p.name;
  d.multiprocessors = p.multiProcessorCount;
  d.warp_size = p.warpSize;
#if defined(DS_EMU)
  d.arch = "emu";
  d.max_smem_per_block = p.sharedMemPerBlockOptin;
#elif defined(DS_GPU_HIP)
  d.arch = p.gcnArchName;
  d.arch = d.arch.substr(0, d.arch.find(':'));  // "gfx90a:sramecc+:xnack-" -> "gfx90a"
  d.max_smem_per_block = p.sharedMemPerBlock;
#else
  d.arch = "sm_" + std::to_string(p.major) + std::to_string(p.minor);
  d.max_smem_per_block = p.sharedMemPerBlockOptin;
#endif
  DS_GPU_TRY(GPU(MemGetInfo)(&d.free_bytes, &d.total_bytes), at);
  GPU(Stream_t) s{};
  DS_GPU_TRY(GPU(StreamCreateWithFlags)(&s, GPU(StreamNonBlocking)), at);
  rt->stream_ = s;
  const char* sync = std::getenv("DS_GPU_SYNC");
  rt->impl_->sync_after_launch = sync && std::string(sync) == "1";
  return Result<std::unique_ptr<Runtime>>(std::move(rt));  // explicit: nvcc does not move into a converting return
}

Runtime::~Runtime() {
  impl_->blas.reset();  // the BLAS handle and workspace go first, while stream and device live
  (void)GPU(StreamSynchronize)(static_cast<GPU(Stream_t)>(stream_));
  for (auto& [p, use] : impl_->live) (void)GPU(Free)(p);
  (void)GPU(StreamDestroy)(static_cast<GPU(Stream_t)>(stream_));
}

Result<DeviceInfo> Runtime::query_memory() const {
  DeviceInfo d = info_;
  DS_GPU_TRY(GPU(MemGetInfo)(&d.free_bytes, &d.total_bytes), "device " + std::to_string(info_.index));
  return d;
}

std::vector<std::pair<std::string, size_t>> Runtime::allocation_tally() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::pair<std::string, size_t>> v(impl_->by_what.begin(), impl_->by_what.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return v;
}

std::shared_ptr<void>& Runtime::blas_slot() { return impl_->blas; }

Result<void*> Runtime::malloc(size_t bytes, const std::string& what) {
  void* p = nullptr;
  const GPU(Error_t) e = GPU(Malloc)(&p, bytes);
  if (e != GPU(Success)) {
    (void)GPU(GetLastError)();  // an allocation failure is not sticky; clear it for the next launch check
    size_t free_b = 0, total_b = info_.total_bytes;
    (void)GPU(MemGetInfo)(&free_b, &total_b);
    std::string msg = "cannot allocate " + gib(bytes) + " for " + what + " on " + info_.name + ": " + gib(free_b) +
                      " free of " + gib(total_b) + " (" + GPU(GetErrorName)(e) + ")";
    const auto tally = allocation_tally();
    if (!tally.empty()) {
      msg += "; largest users here:";
      for (size_t i = 0; i < tally.size() && i < 5; ++i)
        msg += std::string(i ? "," : "") + " " + tally[i].first + " " + gib(tally[i].second);
    }
    return resource_exhausted(msg);
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->live[p] = {what, bytes};
  impl_->by_what[what] += bytes;
  return p;
}

void Runtime::free(void* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->live.find(p);
    if (it == impl_->live.end()) {
      std::fprintf(stderr, "deltaserve: Runtime::free(%p): not a live allocation of this runtime\n", p);
      return;
    }
    auto w = impl_->by_what.find(it->second.first);
    if ((w->second -= it->second.second) == 0) impl_->by_what.erase(w);
    impl_->live.erase(it);
  }
  (void)GPU(Free)(p);  // cudaFree synchronises the device: memory is never reused under a running kernel
}

Result<void*> Runtime::host_alloc(size_t bytes) {
  void* p = nullptr;
  DS_GPU_TRY(GPU(MallocHost)(&p, bytes), gib(bytes) + " of page-locked host memory");
  return p;
}

void Runtime::host_free(void* p) {
  if (p) (void)GPU(FreeHost)(p);
}

Status Runtime::copy_h2d(void* dst, const void* src, size_t bytes) {
  DS_GPU_TRY(GPU(MemcpyAsync)(dst, src, bytes, GPU(MemcpyHostToDevice), static_cast<GPU(Stream_t)>(stream_)),
             "host->device, " + ptrs(dst, src, bytes));
  return Status::ok();
}

Status Runtime::copy_d2h(void* dst, const void* src, size_t bytes) {
  DS_GPU_TRY(GPU(MemcpyAsync)(dst, src, bytes, GPU(MemcpyDeviceToHost), static_cast<GPU(Stream_t)>(stream_)),
             "device->host, " + ptrs(dst, src, bytes));
  return Status::ok();
}

Status Runtime::copy_d2d(void* dst, const void* src, size_t bytes) {
  DS_GPU_TRY(GPU(MemcpyAsync)(dst, src, bytes, GPU(MemcpyDeviceToDevice), static_cast<GPU(Stream_t)>(stream_)),
             "device->device, " + ptrs(dst, src, bytes));
  return Status::ok();
}

Status Runtime::memset(void* dst, int value, size_t bytes) {
  DS_GPU_TRY(GPU(MemsetAsync)(dst, value, bytes, static_cast<GPU(Stream_t)>(stream_)), ptrs(dst, nullptr, bytes));
  return Status::ok();
}

Status Runtime::synchronize() {
  DS_GPU_TRY(GPU(StreamSynchronize)(static_cast<GPU(Stream_t)>(stream_)), "compute stream");
  return Status::ok();
}

Result<void*> Runtime::event_record() {
  GPU(Event_t) e{};
  DS_GPU_TRY(GPU(EventCreate)(&e), "");
  const GPU(Error_t) r = GPU(EventRecord)(e, static_cast<GPU(Stream_t)>(stream_));
  if (r != GPU(Success)) {
    (void)GPU(EventDestroy)(e);
    return failed(r, "EventRecord", "compute stream");
  }
  return static_cast<void*>(e);
}

Status Runtime::event_synchronize(void* e) {
  DS_GPU_TRY(GPU(EventSynchronize)(static_cast<GPU(Event_t)>(e)), "");
  return Status::ok();
}

Result<float> Runtime::event_elapsed_ms(void* start, void* end) {
  float ms = 0;
  DS_GPU_TRY(GPU(EventSynchronize)(static_cast<GPU(Event_t)>(end)), "");
  DS_GPU_TRY(GPU(EventElapsedTime)(&ms, static_cast<GPU(Event_t)>(start), static_cast<GPU(Event_t)>(end)), "");
  return ms;
}

void Runtime::event_destroy(void* e) {
  if (e) (void)GPU(EventDestroy)(static_cast<GPU(Event_t)>(e));
}

Status Runtime::check_launch(const char* op, const std::string& shapes) const {
  GPU(Error_t) e = GPU(GetLastError)();
  if (e == GPU(Success) && impl_->sync_after_launch && !impl_->capturing)
    e = GPU(StreamSynchronize)(static_cast<GPU(Stream_t)>(stream_));
  if (e != GPU(Success))
    return internal_error(std::string(op) + " [" + shapes + "] on " + info_.name + ": kernel failed: " +
                          GPU(GetErrorName)(e) + " (" + GPU(GetErrorString)(e) + ")");
  return Status::ok();
}

// --- graphs ---
// CUDA/HIP: a captured stream instantiated once. Relaxed capture mode: the backend's own rule (no
// allocation or synchronisation between begin_capture and end_capture) is what the emulation
// enforces in tests; the vendor does not need to police other threads.
#if defined(DS_EMU)
struct RuntimeGraph : Graph {
  std::vector<std::function<void()>> ops;
};
#else
struct RuntimeGraph : Graph {
  GPU(Graph_t) graph = nullptr;
  GPU(GraphExec_t) exec = nullptr;
  ~RuntimeGraph() override {
    if (exec) (void)GPU(GraphExecDestroy)(exec);
    if (graph) (void)GPU(GraphDestroy)(graph);
  }
};
#endif

Status Runtime::begin_capture() {
  if (impl_->capturing) return internal_error("begin_capture: the stream is already capturing");
#if defined(DS_EMU)
  impl_->captured.clear();
  ds::emu::begin_capture(&impl_->captured);
#else
  DS_GPU_TRY(GPU(StreamBeginCapture)(static_cast<GPU(Stream_t)>(stream_), GPU(StreamCaptureModeRelaxed)),
             "compute stream");
#endif
  impl_->capturing = true;
  return Status::ok();
}

Result<std::unique_ptr<Graph>> Runtime::end_capture() {
  if (!impl_->capturing) return internal_error("end_capture without begin_capture");
  impl_->capturing = false;
  auto g = std::make_unique<RuntimeGraph>();
#if defined(DS_EMU)
  ds::emu::end_capture();
  g->ops = std::move(impl_->captured);
  impl_->captured.clear();
#else
  DS_GPU_TRY(GPU(StreamEndCapture)(static_cast<GPU(Stream_t)>(stream_), &g->graph), "compute stream");
#if defined(DS_GPU_HIP)
  DS_GPU_TRY(hipGraphInstantiate(&g->exec, g->graph, nullptr, nullptr, 0), "captured step");
#else
  DS_GPU_TRY(cudaGraphInstantiate(&g->exec, g->graph, 0ULL), "captured step");
#endif
#endif
  return Result<std::unique_ptr<Graph>>(std::move(g));
}

Status Runtime::launch_graph(const Graph& graph) {
  const auto& g = static_cast<const RuntimeGraph&>(graph);
#if defined(DS_EMU)
  for (const auto& op : g.ops) op();
#else
  DS_GPU_TRY(GPU(GraphLaunch)(g.exec, static_cast<GPU(Stream_t)>(stream_)), "compute stream");
#endif
  return Status::ok();
}

bool Runtime::capturing() const { return impl_->capturing; }

}  // namespace ds::backend::gpu
