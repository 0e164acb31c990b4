// Tensor-parallel ranks as threads of one process (TurboMind's thread_comm): n communicators sharing
// one state, one thread per rank. GoogleTest runs TP=2/4 with it, without mpirun. Data moves through
// host memory (Backend::download/upload), so it suits host backends; every collective is two
// generation-counted barriers, bounded by `deadline`: a peer that never arrives fails the collective
// (and the group) instead of hanging it.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "deltaserve/dist/communicator.h"

namespace ds::dist {

// Communicator r is rank r of n (name "threads"); each must be used by one thread at a time.
std::vector<std::shared_ptr<Communicator>> make_thread_group(
    int n, std::chrono::milliseconds deadline = std::chrono::seconds(300));

}  // namespace ds::dist
