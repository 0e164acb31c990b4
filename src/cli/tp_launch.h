// The processes of a tensor-parallel `serve` (DESIGN.md §3): one per rank, rank 0 serving HTTP.
// `-tp N` alone (--distributed-executor-backend mp, the default) starts the N ranks on this machine
// by running the same command line again under Open MPI's mpirun; under mpirun already (several
// machines, or --distributed-executor-backend mpi / external_launcher) each process joins the MPI
// world as its rank.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/dist/communicator.h"
#include "deltaserve/server/cli_args.h"

namespace ds::cli {

// Joins (or, for mp on one machine, starts) the ranks: this process's group (single_rank() at TP 1).
// argv: everything after `serve`. Replaces this process with mpirun when it starts the ranks; an
// error when that cannot happen.
Result<std::shared_ptr<dist::Communicator>> join_tp_ranks(const server::ServeArgs& a,
                                                          const std::vector<std::string>& argv);

}  // namespace ds::cli
