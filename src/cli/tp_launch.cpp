// Starting and joining tensor-parallel ranks (src/cli/tp_launch.h).
#include "tp_launch.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "deltaserve/core/log.h"
#include "deltaserve/dist/mpi_comm.h"

namespace ds::cli {

namespace {

void set_default_env(const char* name, const std::string& value) { setenv(name, value.c_str(), 0); }

// Each rank takes its share of the cores (DS_NUM_THREADS), and picks its GPU: the local rank's
// entry of CUDA/HIP_VISIBLE_DEVICES (or that index), so every rank sees one device as device 0.
void pin_local_rank(int local_rank, int ranks_here) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  set_default_env("DS_NUM_THREADS", std::to_string(std::max(1u, cores / static_cast<unsigned>(ranks_here))));
  for (const char* var : {"CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"}) {
    std::vector<std::string> ids;
    if (const char* v = std::getenv(var)) {
      std::string s = v, item;
      for (char c : s + ",") {
        if (c != ',') {
          item += c;
        } else if (!item.empty()) {
          ids.push_back(item);
          item.clear();
        }
      }
    }
    const std::string mine = ids.empty() ? std::to_string(local_rank)
                                         : ids[static_cast<size_t>(local_rank) % ids.size()];
    setenv(var, mine.c_str(), 1);
  }
}

[[noreturn]] void exec_under_mpirun(int tp, const std::vector<std::string>& argv) {
  // Shared memory between the ranks of one machine; oversubscribed ranks yield instead of spinning
  // (research/tensor-parallel.md §4); root is allowed (containers).
  set_default_env("OMPI_MCA_btl", "self,vader");
  set_default_env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
  set_default_env("OMPI_MCA_mpi_yield_when_idle", "1");
  set_default_env("OMPI_MCA_rmaps_base_oversubscribe", "1");
  if (geteuid() == 0) {
    set_default_env("OMPI_ALLOW_RUN_AS_ROOT", "1");
    set_default_env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
  }
  const char* mpirun = std::getenv("DS_MPIRUN") ? std::getenv("DS_MPIRUN") : "mpirun";
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  std::vector<std::string> args = {mpirun, "-n", std::to_string(tp), "--bind-to", "none", "--tag-output",
                                   self, "serve"};
  args.insert(args.end(), argv.begin(), argv.end());
  std::vector<char*> c;
  for (auto& s : args) c.push_back(s.data());
  c.push_back(nullptr);
  DS_INFO << "starting " << tp << " tensor-parallel ranks: " << mpirun << " -n " << tp << " ... (rank 0 serves HTTP)";
  execvp(mpirun, c.data());
  std::fprintf(stderr, "deltaserve serve: error: --tensor-parallel-size %d starts its ranks with '%s', which could "
               "not be run (%s); install Open MPI (openmpi-bin) or set DS_MPIRUN\n", tp, mpirun, std::strerror(errno));
  std::exit(1);
}

// The command line that starts the ranks: one host entry per node, TP / nnodes slots each.
std::string mpirun_hint(const server::ServeArgs& a) {
  const int tp = a.tensor_parallel_size, nodes = std::max(1, a.nnodes);
  std::string hosts;
  for (int n = 0; n < nodes && nodes > 1; ++n)
    hosts += (n ? "," : " -H ") + (n < 2 || n + 1 == nodes ? "host" + std::to_string(n) + ":" + std::to_string(tp / nodes)
                                                            : std::string("..."));
  return "mpirun -np " + std::to_string(tp) + hosts + " deltaserve serve MODEL -tp " + std::to_string(tp) +
         (nodes > 1 ? " --nnodes " + std::to_string(nodes) : "") +
         " --distributed-executor-backend mpi (README: tensor parallelism)";
}

}  // namespace

Result<std::shared_ptr<dist::Communicator>> join_tp_ranks(const server::ServeArgs& a,
                                                          const std::vector<std::string>& argv) {
  const int tp = a.tensor_parallel_size;
  const std::string& backend = a.distributed_executor_backend;
  if (tp == 1) {
    if (a.nnodes > 1) return invalid_argument("--nnodes " + std::to_string(a.nnodes) + " needs --tensor-parallel-size > 1");
    return dist::single_rank();
  }
  if (backend == "uni") return invalid_argument("--distributed-executor-backend uni runs one rank; --tensor-parallel-size is " + std::to_string(tp));
  if (tp % a.nnodes != 0)
    return invalid_argument("--nnodes " + std::to_string(a.nnodes) + " does not divide --tensor-parallel-size " + std::to_string(tp));
  if (!dist::launched_by_mpi()) {
    if (a.nnodes > 1 || backend == "mpi" || backend == "external_launcher")
      return invalid_argument("ranks on several machines are started by mpirun: " + mpirun_hint(a));
    exec_under_mpirun(tp, argv);
  }
  pin_local_rank(dist::mpi_local_rank(), tp / a.nnodes);
  DS_ASSIGN_OR_RETURN(std::shared_ptr<dist::Communicator> ranks, dist::mpi_world());
  if (ranks->size() != tp)
    return invalid_argument("mpirun started " + std::to_string(ranks->size()) + " processes but --tensor-parallel-size is " +
                            std::to_string(tp) + ": start one process per rank");
  if (a.nnodes > 1 && a.non_default.count("node_rank") && ranks->rank() / (tp / a.nnodes) != a.node_rank) {
    DS_WARN << "--node-rank " << a.node_rank << " disagrees with mpirun's placement (rank " << ranks->rank()
            << "); using mpirun's";
  }
  return ranks;
}

}  // namespace ds::cli
