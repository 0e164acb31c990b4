#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "deltaserve/engine/kv_cache.h"
#include "deltaserve/engine/scheduler.h"

using namespace ds::engine;

namespace {
std::unique_ptr<Sequence> make_seq(int64_t id, int prompt_len) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->prompt.assign(prompt_len, 1);
  return s;
}
}  // namespace

TEST(KvBlockPool, GrowAndRelease) {
  KvBlockPool pool(4, 16);
  std::vector<int32_t> t;
  EXPECT_TRUE(pool.grow_to(&t, 17));
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(pool.grow_to(&t, 32));
  EXPECT_EQ(t.size(), 2u);
  EXPECT_FALSE(pool.grow_to(&t, 16 * 5));  // all or nothing
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(pool.num_free(), 2);
  pool.release(&t);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(pool.num_free(), 4);
}

TEST(PlanCache, ClampsMaxNumSeqsWithWarning) {
  CachePlanInput in;
  in.budget_bytes = 100 << 20;
  in.kv_block_bytes = 1 << 20;
  in.state_slot_bytes = 10 << 20;
  in.block_size = 16;
  in.max_num_seqs = 256;
  in.max_model_len = 160;  // 10 blocks
  auto plan = plan_cache_config(in);
  ASSERT_TRUE(plan.is_ok()) << plan.status().message();
  EXPECT_EQ(plan->max_num_seqs, 9);  // (100 - 10) / 10
  EXPECT_EQ(plan->config.num_state_slots, 9);
  EXPECT_EQ(plan->config.num_kv_blocks, 10);
  EXPECT_EQ(plan->warnings.size(), 1u);
  in.max_model_len = 16 * 200;  // needs more KV than the budget
  EXPECT_FALSE(plan_cache_config(in).is_ok());
}

// vLLM's figure: utilization x total, less what this process took since the device was opened.
TEST(DeviceCacheBudget, UtilizationLessTheModel) {
  DeviceBudgetInput in;
  in.total_bytes = 80LL << 30;
  in.free_at_start = 79LL << 30;
  in.free_after_profile = 40LL << 30;       // 39 GiB taken ...
  in.profile_cache_bytes = 1LL << 30;       // ... of which 1 GiB is the profiling cache
  in.utilization = 0.9;
  auto b = device_cache_budget(in);
  ASSERT_TRUE(b.is_ok()) << b.status().message();
  EXPECT_EQ(b->requested_bytes, static_cast<int64_t>(0.9 * (80LL << 30)));
  EXPECT_EQ(b->model_bytes, 38LL << 30);
  EXPECT_EQ(b->cache_bytes, b->requested_bytes - (38LL << 30));
  // Other processes hold more than 1 - utilization: refused at start, as vLLM does.
  in.free_at_start = 70LL << 30;
  auto e = device_cache_budget(in);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.status().message().find("less than desired GPU memory utilization (0.9"), std::string::npos)
      << e.status().message();
  // The model alone exceeds the share.
  in.free_at_start = 79LL << 30;
  in.utilization = 0.4;
  e = device_cache_budget(in);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.status().message().find("No available memory for the cache blocks"), std::string::npos);
  in.utilization = 0;
  EXPECT_FALSE(device_cache_budget(in).is_ok());
}

TEST(Scheduler, ChunkedPrefillRespectsTokenBudget) {
  KvBlockPool kv(100, 16);
  StateSlotPool slots(8);
  Scheduler s({8, 64}, &kv, &slots);
  auto a = make_seq(1, 100), b = make_seq(2, 10);
  s.add(a.get());
  s.add(b.get());
  auto step = s.schedule();
  ASSERT_EQ(step.size(), 1u);  // a takes the whole budget
  EXPECT_EQ(step[0].num_new_tokens, 64);
  s.commit(step);
  step = s.schedule();
  ASSERT_EQ(step.size(), 2u);
  EXPECT_EQ(step[0].num_new_tokens, 36);
  EXPECT_EQ(step[1].seq, b.get());
  EXPECT_EQ(step[1].num_new_tokens, 10);
  s.commit(step);
  EXPECT_EQ(a->num_computed, 100);
  EXPECT_TRUE(s.check_invariants().is_ok());
}

TEST(Scheduler, MaxNumSeqsCapsRunning) {
  KvBlockPool kv(100, 16);
  StateSlotPool slots(8);
  Scheduler s({2, 1000}, &kv, &slots);
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (int i = 0; i < 5; ++i) {
    seqs.push_back(make_seq(i, 4));
    s.add(seqs.back().get());
  }
  auto step = s.schedule();
  EXPECT_EQ(step.size(), 2u);
  EXPECT_EQ(s.num_running(), 2);
  EXPECT_EQ(s.num_waiting(), 3);
}

TEST(Scheduler, PreemptsNewestByRecompute) {
  KvBlockPool kv(4, 4);  // 16 tokens of KV in total
  StateSlotPool slots(4);
  Scheduler s({4, 100}, &kv, &slots);
  auto a = make_seq(1, 8), b = make_seq(2, 8);
  s.add(a.get());
  s.add(b.get());
  auto step = s.schedule();
  ASSERT_EQ(step.size(), 2u);
  s.commit(step);
  EXPECT_EQ(kv.num_free(), 0);
  a->output.push_back(5);  // a needs a 3rd block: b must be preempted
  step = s.schedule();
  ASSERT_EQ(step.size(), 1u);
  EXPECT_EQ(step[0].seq, a.get());
  EXPECT_EQ(b->state, SeqState::kWaiting);
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_TRUE(b->block_table.empty());
  EXPECT_EQ(s.num_preemptions(), 1);
  EXPECT_EQ(s.waiting().front(), b.get());
  EXPECT_TRUE(s.check_invariants().is_ok());
}

// Random workload: sequences arrive, grow, finish and get removed at random; after every step the
// ownership invariants hold, and at the end every block and slot is back in the pools.
TEST(Scheduler, RandomWorkloadNeverLeaks) {
  for (int trial = 0; trial < 20; ++trial) {
    std::mt19937 rng(trial);
    KvBlockPool kv(40, 8);
    StateSlotPool slots(6);
    Scheduler s({5, 48}, &kv, &slots);
    std::vector<std::unique_ptr<Sequence>> all;
    std::vector<Sequence*> active;
    int64_t next = 0;
    for (int it = 0; it < 400; ++it) {
      if (rng() % 3 == 0 && all.size() < 60) {
        all.push_back(make_seq(next++, 1 + static_cast<int>(rng() % 120)));
        s.add(all.back().get());
        active.push_back(all.back().get());
      }
      auto step = s.schedule();
      int64_t tokens = 0;
      for (auto& st : step) {
        tokens += st.num_new_tokens;
        ASSERT_EQ(st.seq->state, SeqState::kRunning);
        ASSERT_GE(static_cast<int64_t>(st.seq->block_table.size()) * 8, st.seq->num_computed + st.num_new_tokens);
      }
      ASSERT_LE(tokens, 48);
      s.commit(step);
      for (auto& st : step)
        if (st.seq->num_computed == st.seq->total_len()) st.seq->output.push_back(1);
      // finish or cancel some
      for (size_t i = 0; i < active.size();) {
        Sequence* q = active[i];
        if (q->output.size() > 20 || rng() % 50 == 0) {
          s.remove(q);
          active.erase(active.begin() + i);
        } else {
          ++i;
        }
      }
      auto st = s.check_invariants();
      ASSERT_TRUE(st.is_ok()) << st.message();
    }
    for (Sequence* q : active) s.remove(q);
    EXPECT_EQ(kv.num_free(), kv.num_blocks());
    EXPECT_EQ(slots.num_free(), slots.num_slots());
    EXPECT_TRUE(s.idle());
  }
}
