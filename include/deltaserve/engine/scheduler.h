// The continuous-batching scheduler (nano-vllm sized). Each step it gives running sequences, then
// waiting ones (FCFS), a number of new tokens under the token budget: chunked prefill and decode
// are the same thing ("catch the cache up to the tokens we know"). When KV blocks run out it
// preempts the newest running sequence by recompute: everything it holds is freed and it goes back
// to the head of the waiting queue with num_computed = 0. Only the engine thread calls it.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/engine/kv_cache.h"

namespace ds::engine {

enum class SeqState {
  kWaiting,   // queued (new or preempted); holds no KV blocks and no state slot; num_computed == 0
  kRunning,   // holds one state slot and KV blocks covering num_computed tokens
  kFinished,  // released everything; no longer known to the scheduler
};

struct Sequence {
  int64_t id = 0;
  SeqState state = SeqState::kWaiting;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  int64_t num_computed = 0;  // tokens whose KV / GDN state is in the cache
  std::vector<int32_t> block_table;
  int32_t slot = -1;
  int64_t num_preemptions = 0;

  int64_t total_len() const { return static_cast<int64_t>(prompt.size() + output.size()); }
  int32_t token_at(int64_t pos) const {
    const int64_t p = static_cast<int64_t>(prompt.size());
    return pos < p ? prompt[pos] : output[pos - p];
  }
};

struct ScheduledSeq {
  Sequence* seq = nullptr;
  int64_t num_new_tokens = 0;  // tokens [num_computed, num_computed + num_new_tokens) this step
};

struct SchedulerConfig {
  int max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig cfg, KvBlockPool* kv, StateSlotPool* slots);

  void add(Sequence* seq);     // appended to the waiting queue
  void remove(Sequence* seq);  // from whichever queue; frees its cache; state = kFinished
  // Plans one step. Sequences listed are running and own blocks for num_computed + num_new_tokens.
  std::vector<ScheduledSeq> schedule();
  // After the step ran: advances num_computed of every scheduled sequence.
  void commit(const std::vector<ScheduledSeq>& step);

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  bool idle() const { return running_.empty() && waiting_.empty(); }
  int64_t num_preemptions() const { return num_preemptions_; }
  const std::vector<Sequence*>& running() const { return running_; }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  // Checks ownership invariants (no block/slot leaked or shared). For tests and debug builds.
  Status check_invariants() const;

 private:
  void preempt(Sequence* seq);  // seq must be running_.back()

  SchedulerConfig cfg_;
  KvBlockPool* kv_;
  StateSlotPool* slots_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;
  int64_t num_preemptions_ = 0;
};

}  // namespace ds::engine
