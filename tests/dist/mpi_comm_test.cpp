// The MPI communicator under mpirun (ctest runs it at -n 2 and -n 4, tests/CMakeLists.txt): the
// collective checks of comm_checks.h on the CPU backend, on every rank; MPI errors come back as a
// Status. Its own main: MPI is initialised once (mpi_world) before the tests and finalised after,
// and the exit status is a failure on every rank if any rank failed.
#include "deltaserve/dist/mpi_comm.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "deltaserve/backend/cpu_backend.h"
#include "tests/dist/comm_checks.h"

namespace ds::dist {
namespace {

std::shared_ptr<Communicator> g_world;

TEST(MpiComm, World) {
  EXPECT_TRUE(launched_by_mpi());
  EXPECT_EQ(g_world->name(), "mpi");
  EXPECT_GE(g_world->size(), 2);
  EXPECT_GE(mpi_local_rank(), 0);
  EXPECT_LT(mpi_local_rank(), g_world->size());
}

TEST(MpiComm, Collectives) {
  backend::CpuBackend be;
  test::check_all(*g_world, be);
}

TEST(MpiComm, ReservedStagingDoesNotGrow) {
  backend::CpuBackend be;
  auto comm = mpi_world();  // a second duplicate of the world: its own staging
  ASSERT_TRUE(comm.is_ok()) << comm.status().message();
  ASSERT_TRUE((*comm)->reserve(be, 64 * sizeof(float)).is_ok());
  std::vector<float> x(65, 1.0f);
  EXPECT_TRUE((*comm)->all_reduce_sum(be, {x.data(), DType::kF32, 1, 64, 64}).is_ok());
  EXPECT_EQ(x[0], static_cast<float>(g_world->size()));
  Status s = (*comm)->all_reduce_sum(be, {x.data(), DType::kF32, 1, 65, 65});
  EXPECT_EQ(s.code(), ErrorCode::kResourceExhausted) << s.message();
  EXPECT_TRUE((*comm)->barrier().is_ok());
}

TEST(MpiComm, ErrorsComeBackAsStatus) {
  char byte = 0;
  Status s = g_world->broadcast_host(&byte, 1, g_world->size());  // no such root: MPI_ERR_ROOT
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("broadcast_host"), std::string::npos) << s.message();
  EXPECT_TRUE(g_world->barrier().is_ok());  // the communicator is still usable
}

}  // namespace
}  // namespace ds::dist

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = ds::dist::mpi_world();
  if (!world.is_ok()) {
    std::fprintf(stderr, "mpi_comm_test: %s\n", world.status().message().c_str());
    return 1;
  }
  ds::dist::g_world = *world;
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  std::vector<int> all(ds::dist::g_world->size());
  if (!ds::dist::g_world->all_gather_host(&failed, sizeof failed, all.data()).is_ok()) failed = 1;
  for (int f : all) failed |= f;
  ds::dist::g_world.reset();
  ds::dist::mpi_finalize();
  return failed;
}
