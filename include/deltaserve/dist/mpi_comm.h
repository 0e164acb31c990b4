// MPI (Open MPI 4.1, MPICH) as the communicator of CPU ranks and the bootstrap of NCCL/RCCL
// (research/tensor-parallel.md §4). Ranks start under mpirun; only the engine thread calls MPI
// (MPI_THREAD_FUNNELED). A build without MPI compiles this too: mpi_world() then says so.
#pragma once

#include <memory>

#include "deltaserve/dist/communicator.h"

namespace ds::dist {

// This process was started by mpirun/mpiexec/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK set).
bool launched_by_mpi();
// The rank among the ranks on this node (picks the GPU); 0 when the launcher does not say.
int mpi_local_rank();

// Initialises MPI once (MPI_THREAD_FUNNELED) and returns a communicator over a duplicate of
// MPI_COMM_WORLD whose errors come back as Status (MPI_ERRORS_RETURN). abort() is MPI_Abort: it ends
// every rank of the job, which is what a dead or stuck peer calls for (tensor-parallel.md §3.4); a
// hung peer is caught by the caller's step watchdog, not here.
Result<std::shared_ptr<Communicator>> mpi_world();
// MPI_Finalize, if mpi_world() initialised MPI; the communicators must be gone by then.
void mpi_finalize();

}  // namespace ds::dist
