// The MPI communicator (mpi_comm.h). Device data goes through host staging sized by reserve():
// download, one MPI collective on bytes, upload. all_reduce_sum does not use MPI_Allreduce: its
// reduction order is the library's choice (and may differ between ranks for large messages), while
// our contract wants the same bits on every rank, run after run. The messages are small (a layer's
// [T][H] partial), so every rank gathers every partial and sums them itself in rank order 0..n-1.
#include "deltaserve/dist/mpi_comm.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <thread>
#include <cstdlib>
#include <initializer_list>

#include "src/dist/comm_util.h"

#ifdef DS_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: the deprecated C++ bindings need libmpi_cxx
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace ds::dist {

namespace {

const char* env_first(std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (const char* v = std::getenv(n); v != nullptr && *v != '\0') return v;
  return nullptr;
}

}  // namespace

bool launched_by_mpi() {
  return env_first({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) != nullptr;
}

int mpi_local_rank() {
  const char* v =
      env_first({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID"});
  return v ? std::atoi(v) : 0;
}

#ifdef DS_HAVE_MPI

namespace {

bool g_we_initialised = false;

Status mpi_status(int rc, const std::string& what) {
  if (rc == MPI_SUCCESS) return Status::ok();
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  return internal_error("mpi " + what + ": " +
                        (len > 0 ? std::string(text, len) : "error " + std::to_string(rc)));
}

Status count_fits(size_t bytes, const char* what) {
  if (bytes > static_cast<size_t>(INT_MAX))
    return unsupported(std::string("mpi ") + what + ": " + std::to_string(bytes) +
                       " bytes exceed one MPI message");
  return Status::ok();
}

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    parts_.resize(size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  Status reserve(backend::Backend&, size_t bytes) override {
    mine_.reserve(bytes);
    all_.reserve(bytes * static_cast<size_t>(size_));
    out_.reserve(bytes * static_cast<size_t>(size_));
    return Status::ok();
  }

  Status all_reduce_sum(backend::Backend& be, backend::Act x) override {
    DS_RETURN_IF_ERROR(check_reducible(name(), x));
    DS_RETURN_IF_ERROR(gather_partials(be, x, "all_reduce_sum"));
    unsigned char* sum = nullptr;
    { DS_ASSIGN_OR_RETURN(sum, out_.get(packed_bytes(x), "mpi all_reduce_sum")); }
    sum_in_rank_order(parts_.data(), size_, x.dtype, static_cast<size_t>(x.rows * x.cols), sum);
    upload_act(be, sum, x);
    return Status::ok();
  }

  Status all_gather_cols(backend::Backend& be, backend::Act local, backend::Act out) override {
    DS_RETURN_IF_ERROR(check_gather(name(), size_, local, out));
    DS_RETURN_IF_ERROR(gather_partials(be, local, "all_gather_cols"));
    unsigned char* gathered = nullptr;
    { DS_ASSIGN_OR_RETURN(gathered, out_.get(packed_bytes(out), "mpi all_gather_cols")); }
    interleave_cols(parts_.data(), size_, local.rows, local.cols * dtype_size(local.dtype), gathered);
    upload_act(be, gathered, out);
    return Status::ok();
  }

  // Non-blocking and polled with a growing sleep (up to 1 ms): a follower rank waiting for rank 0's
  // next step plan while the server is idle must not spin a core, and a busy decode loop, whose
  // plans come back to back, waits at most a few microseconds more.
  Status broadcast_host(void* data, size_t bytes, int root) override {
    DS_RETURN_IF_ERROR(count_fits(bytes, "broadcast_host"));
    MPI_Request req;
    DS_RETURN_IF_ERROR(
        mpi_status(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &req), "broadcast_host"));
    int sleep_us = 0;
    for (int done = 0;;) {
      DS_RETURN_IF_ERROR(mpi_status(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "broadcast_host"));
      if (done) return Status::ok();
      if (sleep_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
      sleep_us = sleep_us == 0 ? 1 : std::min(1000, sleep_us * 2);
    }
  }

  Status all_gather_host(const void* mine, size_t bytes, void* all) override {
    DS_RETURN_IF_ERROR(count_fits(bytes, "all_gather_host"));
    const int n = static_cast<int>(bytes);
    return mpi_status(MPI_Allgather(mine, n, MPI_BYTE, all, n, MPI_BYTE, comm_), "all_gather_host");
  }

  Status barrier() override { return mpi_status(MPI_Barrier(comm_), "barrier"); }

  // MPI has no way to wake a blocked collective but to end the job. Under MPI_THREAD_FUNNELED a
  // watchdog thread calling MPI_Abort is outside the standard; Open MPI and MPICH both honour it, and
  // the process is ending either way.
  void abort(const std::string& why) override {
    std::fprintf(stderr, "deltaserve: rank %d aborts the MPI job: %s\n", rank_, why.c_str());
    MPI_Abort(comm_, 1);
  }

 private:
  // Every rank's packed copy of x into all_, rank r's at parts_[r].
  Status gather_partials(backend::Backend& be, const backend::Act& x, const char* what) {
    const size_t bytes = packed_bytes(x);
    DS_RETURN_IF_ERROR(count_fits(bytes, what));
    unsigned char *mine = nullptr, *all = nullptr;
    { DS_ASSIGN_OR_RETURN(mine, mine_.get(bytes, what)); }
    { DS_ASSIGN_OR_RETURN(all, all_.get(bytes * size_, what)); }
    download_act(be, x, mine);
    const int n = static_cast<int>(bytes);
    DS_RETURN_IF_ERROR(mpi_status(MPI_Allgather(mine, n, MPI_BYTE, all, n, MPI_BYTE, comm_), what));
    for (int r = 0; r < size_; ++r) parts_[r] = all + r * bytes;
    return Status::ok();
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  HostStaging mine_, all_, out_;    // this rank's copy, every rank's, the result
  std::vector<const void*> parts_;  // into all_
};

}  // namespace

Result<std::shared_ptr<Communicator>> mpi_world() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    DS_RETURN_IF_ERROR(mpi_status(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init"));
    g_we_initialised = true;
    if (provided < MPI_THREAD_FUNNELED)
      return unsupported("mpi: the library gives thread level " + std::to_string(provided) +
                         ", below MPI_THREAD_FUNNELED");
  }
  MPI_Comm comm = MPI_COMM_NULL;
  DS_RETURN_IF_ERROR(mpi_status(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "duplicating MPI_COMM_WORLD"));
  DS_RETURN_IF_ERROR(
      mpi_status(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "setting MPI_ERRORS_RETURN"));
  return std::shared_ptr<Communicator>(std::make_shared<MpiCommunicator>(comm));
}

void mpi_finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_we_initialised && !finalized) MPI_Finalize();
}

#else  // !DS_HAVE_MPI

Result<std::shared_ptr<Communicator>> mpi_world() {
  return unsupported("mpi: deltaserve was built without MPI");
}
void mpi_finalize() {}

#endif

}  // namespace ds::dist
