// The tensor-parallel collectives on the CPU backend: median µs of one all_reduce_sum of a [T][H]
// activation (f32 and bf16, T = 1 and 64, H = --hidden and 4096) and of one all_gather_cols of
// [R][V/N] fp32 logits (R = 1 and 8), with the bytes each rank sends. Prints figures; asserts nothing.
//   mpirun -n 2 [flags] build/bench_allreduce [--hidden H] [--vocab V] [--repeats N]
//   build/bench_allreduce --threads N [...]        (ranks as threads, without MPI)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/core/timer.h"
#include "deltaserve/dist/mpi_comm.h"
#include "deltaserve/dist/thread_comm.h"

using namespace ds;

namespace {

struct Options {
  int threads = 2, repeats = 300;
  int64_t hidden = 2048, vocab = 248320;
};

// Median µs of `op` over repeats (after a warm-up), each call started together on every rank.
double median_us(dist::Communicator& c, int repeats, const std::function<Status()>& op) {
  std::vector<double> us;
  for (int k = -10; k < repeats; ++k) {
    if (!c.barrier().is_ok()) return -1;
    Timer t;
    if (!op().is_ok()) return -1;
    if (k >= 0) us.push_back(t.seconds() * 1e6);
  }
  std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
  return us[us.size() / 2];
}

void row(dist::Communicator& c, const char* op, DType dt, int64_t rows, int64_t cols, double us) {
  if (c.rank() != 0) return;
  const size_t bytes = static_cast<size_t>(rows * cols) * dtype_size(dt);
  std::printf("%-16s %-5s %5lld %7lld %10zu %10.1f\n", op, dtype_name(dt), static_cast<long long>(rows),
              static_cast<long long>(cols), bytes, us);
}

void run_rank(dist::Communicator& c, const Options& o) {
  backend::CpuBackend be;
  std::vector<int64_t> hiddens = {o.hidden};
  if (o.hidden != 4096) hiddens.push_back(4096);
  const int64_t shard = o.vocab / c.size();
  // Zeros: the repeated in-place sums stay finite.
  std::vector<float> buf(
      static_cast<size_t>(std::max<int64_t>(64 * std::max<int64_t>(o.hidden, 4096), 8 * o.vocab)), 0.0f);
  std::vector<float> gathered(static_cast<size_t>(8 * shard * c.size()));
  if (c.rank() == 0) {
    std::printf("== bench_allreduce: %s, %d ranks, median of %d, µs per call ==\n", c.name().c_str(),
                c.size(), o.repeats);
    std::printf("%-16s %-5s %5s %7s %10s %10s\n", "op", "dtype", "rows", "cols", "bytes/rank", "us");
  }
  for (DType dt : {DType::kF32, DType::kBF16})
    for (int64_t h : hiddens)
      for (int64_t t : {1, 64}) {
        backend::Act x{buf.data(), dt, t, h, h};
        row(c, "all_reduce_sum", dt, t, h, median_us(c, o.repeats, [&] { return c.all_reduce_sum(be, x); }));
      }
  for (int64_t r : {1, 8}) {
    backend::Act local{buf.data(), DType::kF32, r, shard, shard};
    backend::Act out{gathered.data(), DType::kF32, r, shard * c.size(), shard * c.size()};
    row(c, "all_gather_cols", DType::kF32, r, shard,
        median_us(c, o.repeats, [&] { return c.all_gather_cols(be, local, out); }));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      o.threads = std::max(1, std::atoi(argv[++i]));
    else if (a == "--hidden" && i + 1 < argc)
      o.hidden = std::max(1, std::atoi(argv[++i]));
    else if (a == "--vocab" && i + 1 < argc)
      o.vocab = std::max(1, std::atoi(argv[++i]));
    else if (a == "--repeats" && i + 1 < argc)
      o.repeats = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_allreduce [--threads N] [--hidden H] [--vocab V] [--repeats N]\n");
      return 2;
    }
  }
  if (dist::launched_by_mpi()) {
    {  // the communicator goes before MPI_Finalize
      auto world = dist::mpi_world();
      if (!world.is_ok()) {
        std::fprintf(stderr, "bench_allreduce: %s\n", world.status().message().c_str());
        return 1;
      }
      run_rank(**world, o);
    }
    dist::mpi_finalize();
    return 0;
  }
  auto comms = dist::make_thread_group(o.threads);
  std::vector<std::thread> ranks;
  for (int r = 0; r < o.threads; ++r) ranks.emplace_back([&, r] { run_rank(*comms[r], o); });
  for (auto& t : ranks) t.join();
  return 0;
}
