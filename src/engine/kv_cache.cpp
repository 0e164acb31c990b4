#include "deltaserve/engine/kv_cache.h"

#include <algorithm>
#include <cstdio>

namespace ds::engine {

KvBlockPool::KvBlockPool(int num_blocks, int block_size)
    : block_size_(std::max(1, block_size)), in_use_(std::max(0, num_blocks), false) {
  free_.reserve(in_use_.size());
  for (int i = num_blocks - 1; i >= 0; --i) free_.push_back(i);
}

int KvBlockPool::blocks_for_tokens(int64_t num_tokens) const {
  return static_cast<int>((num_tokens + block_size_ - 1) / block_size_);
}

bool KvBlockPool::grow_to(std::vector<int32_t>* table, int64_t num_tokens) {
  const int need = blocks_for_tokens(num_tokens) - static_cast<int>(table->size());
  if (need <= 0) return true;
  if (need > num_free()) return false;
  for (int i = 0; i < need; ++i) {
    const int32_t b = free_.back();
    free_.pop_back();
    in_use_[b] = true;
    table->push_back(b);
  }
  return true;
}

void KvBlockPool::release(std::vector<int32_t>* table) {
  for (int32_t b : *table) {
    if (b >= 0 && b < num_blocks() && in_use_[b]) {
      in_use_[b] = false;
      free_.push_back(b);
    }
  }
  table->clear();
}

StateSlotPool::StateSlotPool(int num_slots) : in_use_(std::max(0, num_slots), false) {
  for (int i = num_slots - 1; i >= 0; --i) free_.push_back(i);
}

int32_t StateSlotPool::acquire() {
  if (free_.empty()) return -1;
  const int32_t s = free_.back();
  free_.pop_back();
  in_use_[s] = true;
  return s;
}

void StateSlotPool::release(int32_t slot) {
  if (slot < 0 || slot >= num_slots() || !in_use_[slot]) return;
  in_use_[slot] = false;
  free_.push_back(slot);
}

Result<CachePlan> plan_cache_config(const CachePlanInput& in) {
  if (in.budget_bytes <= 0) return invalid_argument("KV cache memory budget must be positive");
  if (in.kv_block_bytes <= 0 || in.state_slot_bytes < 0 || in.block_size <= 0)
    return invalid_argument("invalid cache geometry from the model");
  if (in.max_num_seqs <= 0) return invalid_argument("--max-num-seqs must be positive");
  const int64_t blocks_per_seq = (in.max_model_len + in.block_size - 1) / in.block_size;
  const int64_t min_kv = std::max<int64_t>(1, blocks_per_seq) * in.kv_block_bytes;
  CachePlan plan;
  plan.config.block_size = in.block_size;
  if (in.budget_bytes < min_kv + in.state_slot_bytes) {
    return resource_exhausted(
        "The model's max seq len (" + std::to_string(in.max_model_len) +
        ") is larger than the maximum number of tokens that can be stored in KV cache (" +
        std::to_string(in.budget_bytes / std::max<int64_t>(1, in.kv_block_bytes + in.state_slot_bytes) *
                       in.block_size) +
        "). Try increasing the KV cache space (" + in.budget_flags + ") or "
        "decreasing `max_model_len` when initializing the engine.");
  }
  int64_t slots = in.max_num_seqs;
  if (in.state_slot_bytes > 0) {
    const int64_t fit = (in.budget_bytes - min_kv) / in.state_slot_bytes;
    if (fit < slots) {
      plan.warnings.push_back("max_num_seqs (" + std::to_string(in.max_num_seqs) +
                              ") exceeds the GDN state slots that fit in the cache budget; clamped to " +
                              std::to_string(fit));
      slots = fit;
    }
  }
  const int64_t kv_bytes = in.budget_bytes - slots * in.state_slot_bytes;
  int64_t blocks = kv_bytes / in.kv_block_bytes;
  blocks = std::min<int64_t>(blocks, 1 << 30);
  plan.config.num_kv_blocks = static_cast<int>(blocks);
  plan.config.num_state_slots = static_cast<int>(slots);
  plan.max_num_seqs = static_cast<int>(slots);
  return plan;
}

namespace {
std::string gib(int64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(b) / 1073741824.0);
  return buf;
}
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
}  // namespace

Result<DeviceBudget> device_cache_budget(const DeviceBudgetInput& in) {
  if (in.total_bytes <= 0 || in.free_at_start < 0 || in.free_after_profile < 0 || in.profile_cache_bytes < 0)
    return invalid_argument("device memory readings must be positive");
  if (!(in.utilization > 0 && in.utilization <= 1))
    return invalid_argument("--gpu-memory-utilization must be in (0, 1]");
  DeviceBudget b;
  b.requested_bytes = static_cast<int64_t>(in.utilization * static_cast<double>(in.total_bytes));
  if (in.free_at_start < b.requested_bytes)
    return resource_exhausted("Free memory on device " + in.device + " (" + gib(in.free_at_start) + "/" +
                              gib(in.total_bytes) + " GiB) on startup is less than desired GPU memory utilization (" +
                              num(in.utilization) + ", " + gib(b.requested_bytes) +
                              " GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.");
  b.model_bytes = std::max<int64_t>(0, in.free_at_start - in.free_after_profile - in.profile_cache_bytes);
  b.cache_bytes = b.requested_bytes - b.model_bytes;
  if (b.cache_bytes <= 0)
    return resource_exhausted("No available memory for the cache blocks: the model takes " + gib(b.model_bytes) +
                              " GiB of the " + gib(b.requested_bytes) + " GiB that --gpu-memory-utilization " +
                              num(in.utilization) +
                              " allows. Try increasing `gpu_memory_utilization` when initializing the engine.");
  return b;
}

}  // namespace ds::engine
