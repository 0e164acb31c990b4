// The thread-group communicator (thread_comm.h). Each collective: every rank publishes a pointer to
// its packed host copy, waits for all (barrier 1), reads the others' copies into its own staging,
// waits again (barrier 2: no rank reuses its copy while a peer still reads it), then uploads.
#include "deltaserve/dist/thread_comm.h"

#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>

#include "src/dist/comm_util.h"

namespace ds::dist {

namespace {

class GroupState {
 public:
  GroupState(int n, std::chrono::milliseconds deadline) : size_(n), deadline_(deadline), published_(n) {}

  int size() const { return size_; }
  const void* const* published() const { return published_.data(); }
  void publish(int rank, const void* p) { published_[rank] = p; }

  // Blocks until every rank has arrived (a generation-counted barrier), the group is aborted, or the
  // deadline passes, which aborts the group: its peers fail too rather than wait for the lost rank.
  Status wait_all(int rank, const char* what) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!aborted_.empty()) return failed(what);
    const uint64_t gen = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return Status::ok();
    }
    const auto until = std::chrono::steady_clock::now() + deadline_;
    while (generation_ == gen && aborted_.empty()) {
      if (cv_.wait_until(lk, until) == std::cv_status::timeout && generation_ == gen && aborted_.empty()) {
        aborted_ = "rank " + std::to_string(rank) + " waited " + std::to_string(deadline_.count()) +
                   " ms in " + what + " and only " + std::to_string(arrived_) + " of " +
                   std::to_string(size_) + " ranks arrived (a peer is gone or stuck)";
        cv_.notify_all();
      }
    }
    return generation_ != gen ? Status::ok() : failed(what);
  }

  void abort(const std::string& why) {
    std::lock_guard<std::mutex> lk(mu_);
    if (aborted_.empty()) aborted_ = why.empty() ? "aborted" : why;
    cv_.notify_all();
  }

 private:
  Status failed(const char* what) const {
    return internal_error(std::string("threads ") + what +
                          ": the tensor-parallel group was aborted: " + aborted_);
  }

  const int size_;
  const std::chrono::milliseconds deadline_;
  std::vector<const void*> published_;  // written before barrier 1, read between barriers 1 and 2
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  std::string aborted_;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<GroupState> group, int rank) : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  std::string name() const override { return "threads"; }

  Status reserve(backend::Backend&, size_t bytes) override {
    mine_.reserve(bytes);
    out_.reserve(bytes * static_cast<size_t>(size()));
    return Status::ok();
  }

  Status all_reduce_sum(backend::Backend& be, backend::Act x) override {
    DS_RETURN_IF_ERROR(check_reducible(name(), x));
    const size_t bytes = packed_bytes(x);
    unsigned char* sum = nullptr;
    { DS_ASSIGN_OR_RETURN(sum, out_.get(bytes, "threads all_reduce_sum")); }
    const size_t n = static_cast<size_t>(x.rows * x.cols);
    DS_RETURN_IF_ERROR(exchange(
        "all_reduce_sum", mine_, bytes, [&](void* host) { download_act(be, x, host); },
        [&](const void* const* parts) { sum_in_rank_order(parts, size(), x.dtype, n, sum); }));
    upload_act(be, sum, x);
    return Status::ok();
  }

  Status all_gather_cols(backend::Backend& be, backend::Act local, backend::Act out) override {
    DS_RETURN_IF_ERROR(check_gather(name(), size(), local, out));
    const size_t bytes = packed_bytes(local);
    unsigned char* all = nullptr;
    { DS_ASSIGN_OR_RETURN(all, out_.get(bytes * size(), "threads all_gather_cols")); }
    const size_t row_bytes = static_cast<size_t>(local.cols) * dtype_size(local.dtype);
    DS_RETURN_IF_ERROR(exchange(
        "all_gather_cols", mine_, bytes, [&](void* host) { download_act(be, local, host); },
        [&](const void* const* parts) { interleave_cols(parts, size(), local.rows, row_bytes, all); }));
    upload_act(be, all, out);
    return Status::ok();
  }

  Status broadcast_host(void* data, size_t bytes, int root) override {
    if (root < 0 || root >= size())
      return invalid_argument("threads broadcast_host: no rank " + std::to_string(root));
    return exchange(
        "broadcast_host", host_, rank_ == root ? bytes : 0,
        [&](void* host) { std::memcpy(host, data, bytes); },
        [&](const void* const* parts) {
          if (rank_ != root && bytes > 0) std::memcpy(data, parts[root], bytes);
        });
  }

  Status all_gather_host(const void* mine, size_t bytes, void* all) override {
    return exchange(
        "all_gather_host", host_, bytes, [&](void* host) { std::memcpy(host, mine, bytes); },
        [&](const void* const* parts) {
          for (int r = 0; r < size() && bytes > 0; ++r)
            std::memcpy(static_cast<char*>(all) + r * bytes, parts[r], bytes);
        });
  }

  Status barrier() override { return group_->wait_all(rank_, "barrier"); }
  void abort(const std::string& why) override { group_->abort(why); }

 private:
  // write_mine fills this rank's `bytes` of staging; read_all sees every rank's, in rank order.
  Status exchange(const char* what, HostStaging& staging, size_t bytes,
                  const std::function<void(void*)>& write_mine,
                  const std::function<void(const void* const*)>& read_all) {
    unsigned char* host = nullptr;
    { DS_ASSIGN_OR_RETURN(host, staging.get(bytes, what)); }
    if (bytes > 0) write_mine(host);
    group_->publish(rank_, host);
    DS_RETURN_IF_ERROR(group_->wait_all(rank_, what));
    read_all(group_->published());
    return group_->wait_all(rank_, what);
  }

  std::shared_ptr<GroupState> group_;
  const int rank_;
  // This rank's copy of a device collective's input (the peers read it) and what it assembles from
  // every rank's, sized by reserve(); host collectives' copies (plans: any size, never captured).
  HostStaging mine_, out_, host_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_thread_group(int n, std::chrono::milliseconds deadline) {
  auto group = std::make_shared<GroupState>(n, deadline);
  std::vector<std::shared_ptr<Communicator>> comms;
  for (int r = 0; r < n; ++r) comms.push_back(std::make_shared<ThreadCommunicator>(group, r));
  return comms;
}

}  // namespace ds::dist
