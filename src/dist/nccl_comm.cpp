// The NCCL/RCCL communicator (nccl_comm.h). Our own declarations of the library's C API: RCCL exports
// the same symbols, enum values and 128-byte unique id; the streams are opaque pointers either way.
// Later library versions only append values (ncclAvg, fp8 types, ncclRemoteError, ncclInProgress),
// so no *Num* sentinel is used and any result but ncclSuccess is an error (tensor-parallel.md §4).
//
// all_reduce_sum is ncclAllReduce in place: NCCL reduces each chunk on one rank and forwards the
// result, so every rank gets the same bits; bf16/fp16 partials are added in that dtype along the way
// (at TP 2 a single rounding, as the host communicators' fp32 sum gives).
#include "deltaserve/dist/nccl_comm.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "deltaserve/core/log.h"
#include "src/dist/comm_util.h"

namespace ds::dist {

namespace {

using ncclResult_t = int;
using ncclComm_t = struct ncclComm*;
using Stream = void*;  // cudaStream_t / hipStream_t
struct ncclUniqueId {
  char internal[128];
};
constexpr ncclResult_t ncclSuccess = 0;
constexpr int ncclSum = 0;
constexpr int ncclUint8 = 1, ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9;  // ncclInt32 = 2: unused

struct NcclLib {
  std::string path;
  bool rccl = false;
  ncclResult_t (*GetVersion)(int*);
  ncclResult_t (*GetUniqueId)(ncclUniqueId*);
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, Stream);
  ncclResult_t (*AllGather)(const void*, void*, size_t, int, ncclComm_t, Stream);
  ncclResult_t (*Broadcast)(const void*, void*, size_t, int, int, ncclComm_t, Stream);
  ncclResult_t (*GroupStart)();
  ncclResult_t (*GroupEnd)();
  ncclResult_t (*CommDestroy)(ncclComm_t);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*);
  const char* (*GetErrorString)(ncclResult_t);

  Status check(ncclResult_t rc, const std::string& what) const {
    if (rc == ncclSuccess) return Status::ok();
    const char* text = GetErrorString(rc);
    return internal_error(std::string(rccl ? "rccl " : "nccl ") + what + ": " +
                          (text ? text : "unknown error") + " (result " + std::to_string(rc) + ")");
  }
};

template <typename F>
bool bind(void* handle, const char* symbol, F*& fn) {
  fn = reinterpret_cast<F*>(dlsym(handle, symbol));
  return fn != nullptr;
}

Result<NcclLib> open_library() {
  const char* override_path = std::getenv("DS_NCCL_SO_PATH");
  std::vector<std::string> candidates;
  if (override_path && *override_path)
    candidates = {override_path};
  else
    candidates = {"libnccl.so.2", "librccl.so.1"};
  std::string tried;
  void* handle = nullptr;
  NcclLib lib;
  for (const std::string& c : candidates) {
    handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle) {
      lib.path = c;
      break;
    }
    const char* err = dlerror();
    tried += "\n  " + c + ": " + (err ? err : "not found");
  }
  if (!handle)
    return not_found(
        "tensor parallelism on a GPU needs NCCL (CUDA) or RCCL (ROCm); set DS_NCCL_SO_PATH to "
        "its library. Tried:" +
        tried);
  lib.rccl = lib.path.find("rccl") != std::string::npos;
  const bool all =
      bind(handle, "ncclGetVersion", lib.GetVersion) && bind(handle, "ncclGetUniqueId", lib.GetUniqueId) &&
      bind(handle, "ncclCommInitRank", lib.CommInitRank) && bind(handle, "ncclAllReduce", lib.AllReduce) &&
      bind(handle, "ncclAllGather", lib.AllGather) && bind(handle, "ncclBroadcast", lib.Broadcast) &&
      bind(handle, "ncclGroupStart", lib.GroupStart) && bind(handle, "ncclGroupEnd", lib.GroupEnd) &&
      bind(handle, "ncclCommDestroy", lib.CommDestroy) && bind(handle, "ncclCommAbort", lib.CommAbort) &&
      bind(handle, "ncclCommGetAsyncError", lib.CommGetAsyncError) &&
      bind(handle, "ncclGetErrorString", lib.GetErrorString);
  if (!all)
    return unsupported(lib.path + " lacks an NCCL function deltaserve uses (NCCL 2.7 or later is needed)");
  return lib;  // the handle stays open for the life of the process
}

Result<const NcclLib*> library() {
  static const Result<NcclLib> lib = open_library();
  if (!lib.is_ok()) return lib.status();
  return &lib.value();
}

Result<int> nccl_dtype(DType t) {
  switch (t) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    default:
      return unsupported(std::string("nccl: no reduction for ") + dtype_name(t));
  }
}

std::string version_text(int v) {  // 2.18.3 is 21803 since NCCL 2.9, 2708 before
  const int major = v >= 10000 ? v / 10000 : v / 1000, minor = v >= 10000 ? v % 10000 / 100 : v % 1000 / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(v % 100);
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const NcclLib& lib, ncclComm_t comm, std::shared_ptr<Communicator> bootstrap)
      : lib_(lib), comm_(comm), bootstrap_(std::move(bootstrap)) {}
  ~NcclCommunicator() override {
    if (!aborted_.load()) lib_.CommDestroy(comm_);
  }

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  std::string name() const override { return lib_.rccl ? "rccl" : "nccl"; }

  // Room for a contiguous copy of a call's input plus every rank's (all_gather_cols' receive side).
  Status reserve(backend::Backend& be, size_t bytes) override {
    DS_RETURN_IF_ERROR(grow_scratch(be, bytes * (size() + 1)));
    reserved_ = true;
    return Status::ok();
  }

  Status all_reduce_sum(backend::Backend& be, backend::Act x) override {
    DS_RETURN_IF_ERROR(check_reducible(name(), x));
    DS_RETURN_IF_ERROR(usable());
    int type = 0;
    { DS_ASSIGN_OR_RETURN(type, nccl_dtype(x.dtype)); }
    const size_t n = static_cast<size_t>(x.rows * x.cols);
    if (x.contiguous())
      return lib_.check(lib_.AllReduce(x.data, x.data, n, type, ncclSum, comm_, be.native_stream()),
                        "all_reduce_sum");
    // A strided view goes through a contiguous copy (NCCL takes flat buffers).
    const size_t esz = dtype_size(x.dtype), row = x.cols * esz;
    DS_RETURN_IF_ERROR(scratch(be, packed_bytes(x), "all_reduce_sum"));
    be.copy_rows(scratch_->data(), row, x.data, x.ld * esz, row, x.rows);
    DS_RETURN_IF_ERROR(lib_.check(
        lib_.AllReduce(scratch_->data(), scratch_->data(), n, type, ncclSum, comm_, be.native_stream()),
        "all_reduce_sum"));
    be.copy_rows(x.data, x.ld * esz, scratch_->data(), row, row, x.rows);
    return Status::ok();
  }

  // Every rank's packed block into scratch [size][rows][cols] (bytes, so any dtype), then each block
  // into its columns of out.
  Status all_gather_cols(backend::Backend& be, backend::Act local, backend::Act out) override {
    DS_RETURN_IF_ERROR(check_gather(name(), size(), local, out));
    DS_RETURN_IF_ERROR(usable());
    const size_t esz = dtype_size(local.dtype), row = local.cols * esz, bytes = packed_bytes(local);
    DS_RETURN_IF_ERROR(scratch(be, bytes * (size() + 1), "all_gather_cols"));
    char* recv = static_cast<char*>(scratch_->data());
    const void* send = local.data;
    if (!local.contiguous()) {
      char* packed = recv + bytes * size();
      be.copy_rows(packed, row, local.data, local.ld * esz, row, local.rows);
      send = packed;
    }
    DS_RETURN_IF_ERROR(lib_.check(lib_.AllGather(send, recv, bytes, ncclUint8, comm_, be.native_stream()),
                                  "all_gather_cols"));
    for (int r = 0; r < size(); ++r)
      be.copy_rows(static_cast<char*>(out.data) + r * row, out.ld * esz, recv + r * bytes, row, row,
                   local.rows);
    return Status::ok();
  }

  Status broadcast_host(void* data, size_t bytes, int root) override {
    DS_RETURN_IF_ERROR(usable());
    return bootstrap_->broadcast_host(data, bytes, root);
  }
  Status all_gather_host(const void* mine, size_t bytes, void* all) override {
    DS_RETURN_IF_ERROR(usable());
    return bootstrap_->all_gather_host(mine, bytes, all);
  }
  Status barrier() override {
    DS_RETURN_IF_ERROR(usable());
    ncclResult_t async = ncclSuccess;
    DS_RETURN_IF_ERROR(lib_.check(lib_.CommGetAsyncError(comm_, &async), "async error query"));
    DS_RETURN_IF_ERROR(lib_.check(async, "an earlier collective"));
    return bootstrap_->barrier();
  }

  void abort(const std::string& why) override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (why_.empty()) why_ = why.empty() ? "aborted" : why;
    }
    if (aborted_.exchange(true)) return;
    DS_ERROR << name() << ": rank " << rank() << " aborts its communicator: " << why;
    lib_.CommAbort(comm_);
  }

 private:
  Status usable() {
    if (!aborted_.load()) return Status::ok();
    std::lock_guard<std::mutex> lk(mu_);
    return internal_error(name() + ": the tensor-parallel communicator was aborted: " + why_);
  }

  Status grow_scratch(backend::Backend& be, size_t bytes) {
    if (scratch_ && scratch_->bytes() >= bytes) return Status::ok();
    scratch_.reset();
    DS_ASSIGN_OR_RETURN(scratch_, be.alloc(bytes, "tensor-parallel collectives"));
    return Status::ok();
  }

  // After reserve() a call never allocates (it may be recorded into a graph).
  Status scratch(backend::Backend& be, size_t bytes, const char* what) {
    if (reserved_ && scratch_->bytes() < bytes)
      return resource_exhausted(name() + " " + what + ": " + std::to_string(bytes) +
                                " bytes of scratch exceed the " + std::to_string(scratch_->bytes()) +
                                " reserved at load");
    return grow_scratch(be, bytes);
  }

  const NcclLib& lib_;
  ncclComm_t comm_;
  std::shared_ptr<Communicator> bootstrap_;
  std::unique_ptr<backend::DeviceBuffer> scratch_;
  bool reserved_ = false;
  std::atomic<bool> aborted_{false};
  std::mutex mu_;
  std::string why_;
};

}  // namespace

Result<std::shared_ptr<Communicator>> nccl_communicator(std::shared_ptr<Communicator> bootstrap,
                                                        int local_device, backend::Backend& be) {
  if (!bootstrap) return invalid_argument("nccl: no bootstrap communicator");
  const int rank = bootstrap->rank(), size = bootstrap->size();
  // Every rank says whether it can join before rank 0 makes the id, so a rank without the library
  // or a GPU stream fails everywhere instead of leaving its peers in the id broadcast.
  Result<const NcclLib*> lib = library();
  Status local = lib.status();
  if (local.is_ok() && be.native_stream() == nullptr)
    local =
        unsupported("nccl: backend " + be.name() + " has no device stream (NCCL/RCCL need a GPU backend)");
  const int32_t ready = local.is_ok() ? 1 : 0;
  std::vector<int32_t> all_ready(size);
  DS_RETURN_IF_ERROR(bootstrap->all_gather_host(&ready, sizeof ready, all_ready.data()));
  DS_RETURN_IF_ERROR(local);
  for (int r = 0; r < size; ++r)
    if (!all_ready[r])
      return internal_error("nccl: rank " + std::to_string(r) + " cannot join (see its log)");

  const NcclLib& nccl = *lib.value();
  struct {
    int32_t ok;
    ncclUniqueId id;
  } shared{};
  Status made;
  if (rank == 0) {
    made = nccl.check(nccl.GetUniqueId(&shared.id), "getting the unique id");
    shared.ok = made.is_ok() ? 1 : 0;
  }
  DS_RETURN_IF_ERROR(bootstrap->broadcast_host(&shared, sizeof shared, 0));
  DS_RETURN_IF_ERROR(made);
  if (!shared.ok) return internal_error("nccl: rank 0 could not create the unique id (see its log)");

  int version = 0;
  DS_RETURN_IF_ERROR(nccl.check(nccl.GetVersion(&version), "version"));
  ncclComm_t comm = nullptr;
  DS_RETURN_IF_ERROR(nccl.check(nccl.CommInitRank(&comm, size, shared.id, rank),
                                "joining rank " + std::to_string(rank) + " of " + std::to_string(size)));
  DS_INFO << (nccl.rccl ? "rccl " : "nccl ") << version_text(version) << " (" << nccl.path << "): rank "
          << rank << " of " << size << " on device " << local_device;
  return std::shared_ptr<Communicator>(std::make_shared<NcclCommunicator>(nccl, comm, std::move(bootstrap)));
}

}  // namespace ds::dist
