// The engine: one thread that owns the scheduler, both cache pools, every sequence and the model
// call. HTTP threads talk to it only through submit() / abort() (a locked inbox) and the
// per-request RequestStream it pushes events into. The rules are in src/engine/README.md.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/engine/kv_cache.h"
#include "deltaserve/engine/request.h"
#include "deltaserve/engine/sampler.h"
#include "deltaserve/engine/scheduler.h"
#include "deltaserve/engine/stats.h"
#include "deltaserve/engine/text_codec.h"
#include "deltaserve/model/step_plan.h"

namespace ds::engine {

struct EngineConfig {
  int max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;
  int64_t max_model_len = 4096;
  uint64_t seed = 0;  // --seed: seeds the RNG of requests that carry no seed
  bool check_invariants = false;  // verify cache ownership after every step (tests)
};

class Engine {
 public:
  // model and codec must outlive the engine. The pools are sized from model->cache_config().
  Engine(model::Model* model, const TextCodec* codec, EngineConfig cfg);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start();
  // Aborts every request still in flight (each gets a finish=abort event) and joins the thread.
  void shutdown();

  // Thread-safe. Errors: empty prompt, prompt too long for max_model_len, engine stopped.
  Result<RequestHandle> submit(EngineRequest req);
  // Thread-safe. The request is finished (abort) and its cache freed at the start of the next step.
  void abort(int64_t seq_id);
  void abort_all();
  // Graceful shutdown, step 1: every later submit() fails; requests already submitted continue.
  void stop_accepting();

  EngineStats stats() const;  // thread-safe snapshot
  bool alive() const { return alive_.load() && model_->healthy(); }  // a dead TP rank: the model says so
  const EngineConfig& config() const { return cfg_; }

 private:
  struct Live;
  void loop();
  void step();
  void finish(Live* live, FinishReason reason, RequestEvent ev);
  void process_token(Live* live, const backend::SampleResult& sampled);
  void fail_all(const Status& st);
  void publish_gauges();

  model::Model* model_;
  const TextCodec* codec_;
  EngineConfig cfg_;
  KvBlockPool kv_;
  StateSlotPool slots_;
  Scheduler sched_;
  Rng seed_rng_;
  std::unordered_map<int64_t, std::unique_ptr<Live>> live_;  // engine thread only

  std::mutex inbox_mu_;
  std::condition_variable inbox_cv_;
  std::vector<std::unique_ptr<Live>> inbox_;
  std::vector<int64_t> aborts_;
  bool abort_all_ = false;
  bool stop_ = false;
  bool accepting_ = true;
  int64_t next_id_ = 1;

  mutable std::mutex stats_mu_;
  EngineStats stats_;

  std::atomic<bool> alive_{true};
  std::atomic<bool> started_{false};
  std::thread thread_;
};

}  // namespace ds::engine
