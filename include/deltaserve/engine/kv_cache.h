// The two cache pools the scheduler hands out (DESIGN.md §3 "Cache"): paged KV blocks for the
// attention layers and one GDN state slot per running sequence. Both are plain id allocators: the
// runtime owns the bytes, the scheduler owns which ids belong to which sequence. Only the engine
// thread touches them. plan_cache_config() turns a memory budget into pool sizes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/model/step_plan.h"

namespace ds::engine {

class KvBlockPool {
 public:
  KvBlockPool(int num_blocks, int block_size);
  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(in_use_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_used() const { return num_blocks() - num_free(); }
  int blocks_for_tokens(int64_t num_tokens) const;
  // Appends blocks to `table` until it covers num_tokens. False (and nothing taken) if short.
  bool grow_to(std::vector<int32_t>* table, int64_t num_tokens);
  void release(std::vector<int32_t>* table);  // returns every block in table, clears it
  double usage() const { return num_blocks() ? double(num_used()) / num_blocks() : 0.0; }

 private:
  int block_size_;
  std::vector<int32_t> free_;  // LIFO: recently freed blocks are reused first
  std::vector<bool> in_use_;
};

class StateSlotPool {
 public:
  explicit StateSlotPool(int num_slots);
  int num_slots() const { return static_cast<int>(in_use_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int32_t acquire();  // -1 if none free
  void release(int32_t slot);

 private:
  std::vector<int32_t> free_;
  std::vector<bool> in_use_;
};

struct CachePlanInput {
  int64_t budget_bytes = 0;
  int64_t kv_block_bytes = 0;     // all attention layers, one block of block_size tokens
  int64_t state_slot_bytes = 0;   // all GDN layers, conv + SSM state of one sequence
  int block_size = 16;
  int max_num_seqs = 256;
  int64_t max_model_len = 0;
  std::string budget_flags = "VLLM_CPU_KVCACHE_SPACE / --kv-cache-memory-bytes";  // named in the error
};

struct CachePlan {
  model::CacheConfig config;
  int max_num_seqs = 0;  // clamped to the state slots that fit
  std::vector<std::string> warnings;
};

// State slots for max_num_seqs are reserved first (clamped, with a warning, when they would leave
// less than one max_model_len sequence of KV blocks); the rest of the budget becomes KV blocks.
// Error when even one max_model_len sequence does not fit (vLLM refuses to start in that case).
Result<CachePlan> plan_cache_config(const CachePlanInput& in);

// A device's cache budget the way vLLM computes it after its profiling run: `utilization` of the
// device's total memory, less what this process took since it opened the device (weights,
// workspace, whatever the profiling step created lazily; the profiling step's own cache excluded).
// Errors as vLLM's: less free memory at start than that share (other processes hold it), or
// nothing left for the cache.
struct DeviceBudgetInput {
  int64_t total_bytes = 0;
  int64_t free_at_start = 0;        // right after the device was opened
  int64_t free_after_profile = 0;   // after loading and one profiling step
  int64_t profile_cache_bytes = 0;  // the cache pools that step ran with (freed before the real ones)
  double utilization = 0.9;
  std::string device = "cuda:0";
};
struct DeviceBudget {
  int64_t requested_bytes = 0;  // utilization x total
  int64_t model_bytes = 0;      // weights + workspace + lazily created resources
  int64_t cache_bytes = 0;      // what the cache pools may use
};
Result<DeviceBudget> device_cache_budget(const DeviceBudgetInput& in);

}  // namespace ds::engine
