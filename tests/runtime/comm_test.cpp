// The communicators without mpirun: the thread group at TP 2 and 4 (and the single rank) pass the
// collective checks of tests/dist/comm_checks.h on the CPU backend; abort wakes a blocked peer; a
// missing peer fails after the deadline; a reserve that is too small fails instead of allocating;
// NCCL refuses a host backend on every rank; every backend's copy_rows places a gathered block.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/backend/reference_backend.h"
#include "deltaserve/dist/nccl_comm.h"
#include "deltaserve/dist/thread_comm.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/dist/comm_checks.h"

namespace ds::dist {
namespace {

using namespace std::chrono_literals;

// Runs body on every rank of a thread group of n, one thread and one CPU backend per rank. The
// deadline turns a rank that stops early (a failed ASSERT) into failures rather than a hang.
void run_ranks(int n, const std::function<void(Communicator&, backend::Backend&)>& body) {
  auto comms = make_thread_group(n, 20s);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      backend::CpuBackend be;
      body(*comms[r], be);
    });
  for (auto& t : threads) t.join();
}

TEST(CommThreads, NamesAndRanks) {
  auto comms = make_thread_group(3);
  ASSERT_EQ(comms.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(comms[r]->rank(), r);
    EXPECT_EQ(comms[r]->size(), 3);
    EXPECT_EQ(comms[r]->name(), "threads");
  }
}

TEST(CommThreads, CollectivesAtTp2) {
  run_ranks(2, test::check_all);
}
TEST(CommThreads, CollectivesAtTp4) {
  run_ranks(4, test::check_all);
}
TEST(CommThreads, CollectivesAtTp3) {
  run_ranks(3, test::check_all);
}

TEST(CommThreads, CollectivesRepeatWithoutDrift) {
  run_ranks(4, [](Communicator& c, backend::Backend& be) {
    for (int k = 0; k < 20; ++k) test::check_all_reduce(c, be, DType::kBF16, 2, 16, 16);
  });
}

TEST(CommSingleRank, CollectivesAreTheIdentity) {
  backend::CpuBackend be;
  test::check_all(*single_rank(), be);
}

TEST(CommThreads, GatherShapesAreChecked) {
  run_ranks(2, [](Communicator& c, backend::Backend& be) {
    float local[4] = {}, out[6] = {};
    Status s = c.all_gather_cols(be, {local, DType::kF32, 1, 4, 4}, {out, DType::kF32, 1, 6, 6});
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(s.message().find("all_gather_cols"), std::string::npos) << s.message();
    EXPECT_EQ(c.all_reduce_sum(be, {local, DType::kI32, 1, 4, 4}).code(), ErrorCode::kUnsupported);
    EXPECT_EQ(c.broadcast_host(local, 4, 2).code(), ErrorCode::kInvalidArgument);
    EXPECT_TRUE(c.barrier().is_ok());  // still in step: nothing above waited
  });
}

TEST(CommThreads, ReservedStagingDoesNotGrow) {
  run_ranks(2, [](Communicator& c, backend::Backend& be) {
    ASSERT_TRUE(c.reserve(be, 64 * sizeof(float)).is_ok());
    std::vector<float> x(65, 1.0f);
    EXPECT_TRUE(c.all_reduce_sum(be, {x.data(), DType::kF32, 1, 64, 64}).is_ok());
    EXPECT_EQ(x[0], 2.0f);
    Status s = c.all_reduce_sum(be, {x.data(), DType::kF32, 1, 65, 65});
    EXPECT_EQ(s.code(), ErrorCode::kResourceExhausted);
    EXPECT_NE(s.message().find("reserved"), std::string::npos) << s.message();
    EXPECT_TRUE(c.barrier().is_ok());
  });
}

TEST(CommThreads, AbortWakesABlockedBarrier) {
  auto comms = make_thread_group(2);
  Status blocked;
  const auto start = std::chrono::steady_clock::now();
  std::thread rank0([&] { blocked = comms[0]->barrier(); });
  std::this_thread::sleep_for(50ms);
  comms[1]->abort("rank 1 died (test)");  // the watchdog, from another thread
  rank0.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_FALSE(blocked.is_ok());
  EXPECT_NE(blocked.message().find("rank 1 died (test)"), std::string::npos) << blocked.message();
  float x[2] = {1, 2};
  backend::CpuBackend be;
  Status later = comms[0]->all_reduce_sum(be, {x, DType::kF32, 1, 2, 2});
  EXPECT_FALSE(later.is_ok());
  EXPECT_NE(later.message().find("aborted"), std::string::npos) << later.message();
  EXPECT_FALSE(comms[1]->broadcast_host(x, sizeof x, 0).is_ok());
}

TEST(CommThreads, AMissingPeerTimesOut) {
  auto comms = make_thread_group(3, 200ms);
  std::thread rank1([&] { EXPECT_TRUE(comms[1]->barrier().code() == ErrorCode::kInternal); });
  const auto start = std::chrono::steady_clock::now();
  Status s = comms[0]->barrier();  // rank 2 never comes
  const auto waited = std::chrono::steady_clock::now() - start;
  rank1.join();
  EXPECT_FALSE(s.is_ok());
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 10s);
  EXPECT_NE(s.message().find("only 2 of 3 ranks arrived"), std::string::npos) << s.message();
  EXPECT_FALSE(comms[2]->barrier().is_ok());  // the group stays failed
}

// Backend::copy_rows on every backend (the GPU one emulated), through the single rank's gather:
// strided rows (a copy per row on the GPU) and packed ones (one copy).
TEST(CommBackends, CopyRowsOnEveryBackend) {
  std::vector<std::shared_ptr<backend::Backend>> backends = {std::make_shared<backend::CpuBackend>(),
                                                             backend::make_reference_backend()};
  auto gpu = backend::gpu::make_gpu_backend(0, {DType::kF32});
  ASSERT_TRUE(gpu.is_ok()) << gpu.status().message();
  backends.push_back(*gpu);
  for (auto& be : backends) {
    SCOPED_TRACE(be->name());
    test::check_all_gather_cols(*single_rank(), *be, DType::kF32, 3, 11, 13, 12);
    test::check_all_gather_cols(*single_rank(), *be, DType::kBF16, 4, 8, 8, 8);
  }
}

// NCCL needs a GPU backend: on a host backend every rank is refused (the library is missing, or the
// backend has no device stream) and none is left waiting in the unique-id broadcast.
TEST(CommNccl, AHostBackendIsRefusedOnEveryRank) {
  run_ranks(2, [](Communicator& c, backend::Backend& be) {
    auto nccl = nccl_communicator(std::shared_ptr<Communicator>(&c, [](Communicator*) {}), 0, be);
    ASSERT_FALSE(nccl.is_ok());
    const std::string& m = nccl.status().message();
    EXPECT_TRUE(m.find("no device stream") != std::string::npos || m.find("NCCL") != std::string::npos) << m;
  });
}

}  // namespace
}  // namespace ds::dist
