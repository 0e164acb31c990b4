#include "deltaserve/engine/scheduler.h"

#include <algorithm>
#include <set>
#include <string>

namespace ds::engine {

Scheduler::Scheduler(SchedulerConfig cfg, KvBlockPool* kv, StateSlotPool* slots)
    : cfg_(cfg), kv_(kv), slots_(slots) {}

void Scheduler::add(Sequence* seq) {
  seq->state = SeqState::kWaiting;
  seq->num_computed = 0;
  waiting_.push_back(seq);
}

void Scheduler::remove(Sequence* seq) {
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) running_.erase(it);
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) waiting_.erase(it);
  kv_->release(&seq->block_table);
  slots_->release(seq->slot);
  seq->slot = -1;
  seq->state = SeqState::kFinished;
}

void Scheduler::preempt(Sequence* seq) {
  running_.pop_back();
  kv_->release(&seq->block_table);
  slots_->release(seq->slot);
  seq->slot = -1;
  seq->num_computed = 0;
  seq->state = SeqState::kWaiting;
  seq->num_preemptions++;
  num_preemptions_++;
  waiting_.push_front(seq);  // recomputed first: it arrived before everything still waiting
}

std::vector<ScheduledSeq> Scheduler::schedule() {
  std::vector<ScheduledSeq> step;
  int64_t budget = cfg_.max_num_batched_tokens;
  bool preempted = false;

  // 1. Running sequences, oldest first. Growing one may evict the newest.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* seq = running_[i];
    const int64_t n = std::min(seq->total_len() - seq->num_computed, budget);
    if (n <= 0) {
      ++i;
      continue;
    }
    bool self_preempted = false;
    while (!kv_->grow_to(&seq->block_table, seq->num_computed + n)) {
      Sequence* victim = running_.back();
      preempt(victim);
      preempted = true;
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;  // seq was the newest; nothing after it is running
    step.push_back({seq, n});
    budget -= n;
    ++i;
  }

  // 2. Waiting sequences, FCFS, while budget, sequence count, slots and blocks allow. No admission
  // in a step that had to preempt: the cache is already short.
  while (!preempted && !waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < cfg_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    const int64_t n = std::min(seq->total_len() - seq->num_computed, budget);
    const int32_t slot = slots_->acquire();
    if (slot < 0) break;
    if (!kv_->grow_to(&seq->block_table, seq->num_computed + n)) {
      slots_->release(slot);
      break;
    }
    waiting_.pop_front();
    seq->slot = slot;
    seq->state = SeqState::kRunning;
    running_.push_back(seq);
    step.push_back({seq, n});
    budget -= n;
  }
  return step;
}

void Scheduler::commit(const std::vector<ScheduledSeq>& step) {
  for (const ScheduledSeq& s : step)
    if (s.seq->state == SeqState::kRunning) s.seq->num_computed += s.num_new_tokens;
}

Status Scheduler::check_invariants() const {
  std::set<int32_t> blocks, slots;
  int64_t held = 0;
  for (const Sequence* s : running_) {
    if (s->state != SeqState::kRunning) return internal_error("running seq not in kRunning state");
    if (s->slot < 0 || !slots.insert(s->slot).second) return internal_error("slot missing or shared");
    if (static_cast<int64_t>(s->block_table.size()) * kv_->block_size() < s->num_computed)
      return internal_error("blocks do not cover computed tokens of seq " + std::to_string(s->id));
    if (s->num_computed > s->total_len()) return internal_error("num_computed beyond known tokens");
    for (int32_t b : s->block_table)
      if (!blocks.insert(b).second) return internal_error("KV block " + std::to_string(b) + " shared");
    held += static_cast<int64_t>(s->block_table.size());
  }
  for (const Sequence* s : waiting_) {
    if (s->state != SeqState::kWaiting || s->slot >= 0 || !s->block_table.empty() || s->num_computed != 0)
      return internal_error("waiting seq " + std::to_string(s->id) + " holds cache");
  }
  if (held != kv_->num_used()) return internal_error("KV blocks leaked: pool says " +
                                                     std::to_string(kv_->num_used()) + " used, seqs hold " +
                                                     std::to_string(held));
  if (static_cast<int>(slots.size()) != slots_->num_slots() - slots_->num_free())
    return internal_error("state slots leaked");
  if (static_cast<int>(running_.size()) > cfg_.max_num_seqs) return internal_error("over max_num_seqs");
  return Status::ok();
}

}  // namespace ds::engine
