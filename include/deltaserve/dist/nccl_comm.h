// NCCL (CUDA) / RCCL (ROCm) as the communicator of GPU ranks, loaded at run time (libnccl.so.2, else
// librccl.so.1; DS_NCCL_SO_PATH overrides) through our own declarations of the few functions used,
// so one binary runs with or without it and builds without its header (DESIGN.md §3 "Vendor
// libraries", research/tensor-parallel.md §4). Device collectives run on the backend's stream and
// may be captured into its graphs; host collectives go to the bootstrap communicator (MPI).
#pragma once

#include <memory>

#include "deltaserve/backend/backend.h"
#include "deltaserve/dist/communicator.h"

namespace ds::dist {

// One rank of an NCCL communicator over the bootstrap's ranks: rank 0 creates the unique id, the
// bootstrap broadcasts it, every rank joins (ncclCommInitRank) on the device current on this thread,
// the one `be` runs on. `local_device` is informational (the log line); the backend picked the device.
// Every bootstrap rank must call this together. abort() is ncclCommAbort.
Result<std::shared_ptr<Communicator>> nccl_communicator(std::shared_ptr<Communicator> bootstrap,
                                                        int local_device, backend::Backend& be);

}  // namespace ds::dist
