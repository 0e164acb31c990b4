// The emulated device under the runtime (DS_EMU): the vendor calls runtime.cpp makes, over host
// memory. Memory is 256-byte aligned host memory; copies are immediate (emulated kernels run to
// completion inside their launch, so there is never anything in flight); events are clock readings.
// DS_EMU_DEVICES=1 makes device_count() report the emulated device (auto picks it).
// DS_EMU_DEVICE_MEMORY=<bytes, or with a K/M/G suffix> gives it a fixed memory size: allocations past
// it fail and emuMemGetInfo reports that size less what is allocated, as a GPU would (memory planning
// is tested this way); unset, it reports the host's memory. Under stream capture (kernels/emu/emu.h)
// copies and fills are recorded with the launches, and what a capturing stream must not do
// (synchronise, allocate, copy to the host) fails as CUDA's global capture mode makes it fail.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "kernels/emu/emu.h"

namespace ds::backend::gpu {
namespace {

using emuError_t = int;
constexpr emuError_t emuSuccess = 0, emuErrorInvalidValue = 1, emuErrorMemoryAllocation = 2,
                     emuErrorStreamCaptureUnsupported = 3;
using emuStream_t = void*;
struct EmuEvent {
  std::chrono::steady_clock::time_point t;
};
using emuEvent_t = EmuEvent*;
enum emuMemcpyKind { emuMemcpyHostToDevice, emuMemcpyDeviceToHost, emuMemcpyDeviceToDevice };
constexpr unsigned emuStreamNonBlocking = 1;
struct emuDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount, warpSize;
  size_t sharedMemPerBlockOptin, totalGlobalMem;
};
const char* emuGetErrorName(emuError_t e) {
  switch (e) {
    case emuSuccess:
      return "emuSuccess";
    case emuErrorMemoryAllocation:
      return "emuErrorMemoryAllocation";
    case emuErrorStreamCaptureUnsupported:
      return "emuErrorStreamCaptureUnsupported";
    default:
      return "emuErrorInvalidValue";
  }
}
const char* emuGetErrorString(emuError_t e) {
  switch (e) {
    case emuSuccess:
      return "no error";
    case emuErrorMemoryAllocation:
      return "out of memory";
    case emuErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    default:
      return "invalid value";
  }
}

// The emulated device's memory: its size (0: the host's) and what is allocated on it.
struct EmuMemory {
  std::mutex mu;
  std::unordered_map<void*, size_t> live;
  size_t used = 0, size = 0;
  EmuMemory() {
    const char* e = std::getenv("DS_EMU_DEVICE_MEMORY");
    if (e == nullptr || *e == '\0') return;
    char* end = nullptr;
    const double v = std::strtod(e, &end);
    const char unit = end ? *end : '\0';
    const double mult = unit == 'G' || unit == 'g'   ? 1073741824.0
                        : unit == 'M' || unit == 'm' ? 1048576.0
                        : unit == 'K' || unit == 'k' ? 1024.0
                                                     : 1.0;
    if (v > 0) size = static_cast<size_t>(v * mult);
  }
  static EmuMemory& get() {
    static EmuMemory m;
    return m;
  }
};

emuError_t emuGetDeviceCount(int* n) {
  const char* e = std::getenv("DS_EMU_DEVICES");
  *n = e && std::atoi(e) > 0 ? 1 : 0;
  return emuSuccess;
}
emuError_t emuSetDevice(int) {
  return emuSuccess;
}
emuError_t emuMemGetInfo(size_t* free_b, size_t* total_b) {
  EmuMemory& m = EmuMemory::get();
  if (m.size > 0) {
    std::lock_guard<std::mutex> lock(m.mu);
    *total_b = m.size;
    *free_b = m.size - std::min(m.used, m.size);
    return emuSuccess;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  *total_b = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page;
  *free_b = static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * page;
  return emuSuccess;
}
emuError_t emuGetDeviceProperties(emuDeviceProp* p, int) {
  std::snprintf(p->name, sizeof p->name, "emulated (host)");
  p->major = p->minor = 0;
  p->multiProcessorCount = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  p->warpSize = ds::emu::warp_size();      // the emulator's current setting (32 or 64)
  p->sharedMemPerBlockOptin = 227 * 1024;  // an H100's opt-in maximum: emulated kernels may use any tiling
  size_t f = 0;
  emuMemGetInfo(&f, &p->totalGlobalMem);
  return emuSuccess;
}
emuError_t emuStreamCreateWithFlags(emuStream_t* s, unsigned) {
  return *s = nullptr, emuSuccess;
}
emuError_t emuStreamDestroy(emuStream_t) {
  return emuSuccess;
}
emuError_t emuStreamSynchronize(emuStream_t) {
  return ds::emu::capturing() ? emuErrorStreamCaptureUnsupported : emuSuccess;
}
void* emu_host_alloc(size_t n) {
  return n > (size_t{1} << 56) ? nullptr
                               : std::aligned_alloc(256, (std::max<size_t>(n, 1) + 255) / 256 * 256);
}
emuError_t emuMalloc(void** p, size_t n) {
  *p = nullptr;
  if (ds::emu::capturing()) return emuErrorStreamCaptureUnsupported;
  EmuMemory& m = EmuMemory::get();
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.size > 0 && n > m.size - std::min(m.used, m.size)) return emuErrorMemoryAllocation;
  *p = emu_host_alloc(n);
  if (*p == nullptr) return emuErrorMemoryAllocation;
  m.live[*p] = n;
  m.used += n;
  return emuSuccess;
}
emuError_t emuFree(void* p) {
  EmuMemory& m = EmuMemory::get();
  {
    std::lock_guard<std::mutex> lock(m.mu);
    auto it = m.live.find(p);
    if (it != m.live.end()) {
      m.used -= it->second;
      m.live.erase(it);
    }
  }
  return std::free(p), emuSuccess;
}
emuError_t emuMallocHost(void** p, size_t n) {
  return (*p = emu_host_alloc(n)) ? emuSuccess : emuErrorMemoryAllocation;
}
emuError_t emuFreeHost(void* p) {
  return std::free(p), emuSuccess;
}
emuError_t emuMemcpyAsync(void* d, const void* s, size_t n, emuMemcpyKind kind, emuStream_t) {
  if (n && (!d || !s)) return emuErrorInvalidValue;
  // A step's results reach the host after its graph, never from inside one (CUDA refuses copies
  // to pageable host memory while capturing).
  if (kind == emuMemcpyDeviceToHost && ds::emu::capturing()) return emuErrorStreamCaptureUnsupported;
  if (n) ds::emu::record_or_run([d, s, n] { std::memmove(d, s, n); });
  return emuSuccess;
}
emuError_t emuMemsetAsync(void* d, int v, size_t n, emuStream_t) {
  if (n && !d) return emuErrorInvalidValue;
  if (n) ds::emu::record_or_run([d, v, n] { std::memset(d, v, n); });
  return emuSuccess;
}
emuError_t emuEventCreate(emuEvent_t* e) {
  return *e = new EmuEvent(), emuSuccess;
}
emuError_t emuEventRecord(emuEvent_t e, emuStream_t) {
  return e->t = std::chrono::steady_clock::now(), emuSuccess;
}
emuError_t emuEventSynchronize(emuEvent_t) {
  return emuSuccess;
}
emuError_t emuEventElapsedTime(float* ms, emuEvent_t a, emuEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return emuSuccess;
}
emuError_t emuEventDestroy(emuEvent_t e) {
  return delete e, emuSuccess;
}
emuError_t emuGetLastError() {
  return emuSuccess;
}
using emuDeviceProp_ = emuDeviceProp;

}  // namespace
}  // namespace ds::backend::gpu
