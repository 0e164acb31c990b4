#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "deltaserve/engine/engine.h"
#include "tests/support/scripted_model.h"

using namespace ds::engine;
using namespace std::chrono_literals;

namespace {

struct Harness {
  ByteCodec codec;
  std::unique_ptr<ScriptedModel> model;
  std::unique_ptr<Engine> engine;

  Harness(const std::string& script_json, int blocks = 64, int slots = 8, int64_t budget = 32,
          int64_t max_len = 256, bool start = true) {
    auto script = parse_script(script_json, codec);
    EXPECT_TRUE(script.is_ok()) << script.status().message();
    ds::model::CacheConfig cc{script->block_size, blocks, slots};
    model = std::make_unique<ScriptedModel>(*script, cc, &codec);
    EngineConfig ec;
    ec.max_num_seqs = slots;
    ec.max_num_batched_tokens = budget;
    ec.max_model_len = max_len;
    ec.check_invariants = true;
    engine = std::make_unique<Engine>(model.get(), &codec, ec);
    if (start) engine->start();
  }

  RequestHandle submit(const std::string& prompt, SamplingParams p) {
    EngineRequest r;
    r.prompt_token_ids = *codec.encode(prompt, false);
    p.eos_token_ids = {ByteCodec::kImEnd};
    r.params = p;
    auto h = engine->submit(std::move(r));
    EXPECT_TRUE(h.is_ok()) << h.status().message();
    return *h;
  }

  // Collects every event of a request until it finishes (bounded wait).
  RequestEvent collect(const RequestHandle& h) {
    RequestEvent all;
    for (int i = 0; i < 200; ++i) {
      auto ev = h.stream->pop_all(50ms);
      if (!ev) continue;
      all.token_ids.insert(all.token_ids.end(), ev->token_ids.begin(), ev->token_ids.end());
      all.text += ev->text;
      for (auto& l : ev->logprobs) all.logprobs.push_back(l);
      if (ev->prompt_logprobs) all.prompt_logprobs = ev->prompt_logprobs;
      all.stop_reason = ev->stop_reason;
      all.error = ev->error;
      all.num_prompt_tokens = ev->num_prompt_tokens;
      all.num_output_tokens = ev->num_output_tokens;
      if (ev->finish != FinishReason::kNone) {
        all.finish = ev->finish;
        return all;
      }
    }
    ADD_FAILURE() << "request did not finish";
    return all;
  }
};

SamplingParams greedy(int64_t max_tokens = 100) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

const char* kScript = R"({"outputs":[{"match":"weather","text":"It is sunny today."},{"text":"Hello there, world!"}]})";

}  // namespace

TEST(Engine, GreedyReproducesScriptAndStopsAtEos) {
  Harness h(kScript);
  auto r = h.collect(h.submit("what is the weather like?", greedy()));
  EXPECT_EQ(r.text, "It is sunny today.");
  EXPECT_EQ(r.finish, FinishReason::kStop);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r.stop_reason));
  EXPECT_EQ(r.num_output_tokens, 19);  // 18 text tokens + EOS
  auto r2 = h.collect(h.submit("hi", greedy()));
  EXPECT_EQ(r2.text, "Hello there, world!");
}

TEST(Engine, MaxTokensStopStringsAndStopTokens) {
  Harness h(kScript);
  auto r = h.collect(h.submit("hi", greedy(5)));
  EXPECT_EQ(r.text, "Hello");
  EXPECT_EQ(r.finish, FinishReason::kLength);
  SamplingParams p = greedy();
  p.stop = {"re, w"};
  r = h.collect(h.submit("hi", p));
  EXPECT_EQ(r.text, "Hello the");
  EXPECT_EQ(std::get<std::string>(r.stop_reason), "re, w");
  p.include_stop_str_in_output = true;
  r = h.collect(h.submit("hi", p));
  EXPECT_EQ(r.text, "Hello there, w");
  p = greedy();
  p.stop_token_ids = {','};
  r = h.collect(h.submit("hi", p));
  EXPECT_EQ(r.text, "Hello there");
  EXPECT_EQ(std::get<int32_t>(r.stop_reason), ',');
  p = greedy(30);
  p.ignore_eos = true;
  r = h.collect(h.submit("hi", p));
  EXPECT_EQ(r.finish, FinishReason::kLength);
  EXPECT_EQ(r.num_output_tokens, 30);
}

TEST(Engine, MinTokensSuppressesEos) {
  Harness h(R"({"outputs":[{"text":"ab"}]})");
  SamplingParams p = greedy(10);
  p.min_tokens = 5;
  auto r = h.collect(h.submit("x", p));
  // EOS is masked for the first 5 tokens; the 6th is the (now allowed) EOS.
  EXPECT_EQ(r.num_output_tokens, 6);
  EXPECT_EQ(r.token_ids.back(), ByteCodec::kImEnd);
  EXPECT_EQ(r.finish, FinishReason::kStop);
}

TEST(Engine, SeedGivesSameOutputWhateverTheBatch) {
  Harness h(kScript);
  SamplingParams p;
  p.temperature = 1.0;
  p.max_tokens = 40;
  p.ignore_eos = true;
  p.seed = 1234;
  auto alone = h.collect(h.submit("hi", p));
  // Same seed inside a busy batch with other (unseeded) requests of different lengths.
  std::vector<RequestHandle> others;
  SamplingParams q = p;
  q.seed.reset();
  for (int i = 0; i < 5; ++i) others.push_back(h.submit(std::string(10 + 7 * i, 'x'), q));
  auto busy = h.submit("hi", p);
  auto r = h.collect(busy);
  for (auto& o : others) h.collect(o);
  EXPECT_EQ(r.token_ids, alone.token_ids);
  p.seed = 99;
  auto other_seed = h.collect(h.submit("hi", p));
  EXPECT_NE(other_seed.token_ids, alone.token_ids);
}

TEST(Engine, PreemptionUnderCachePressureKeepsOutputs) {
  // 12 blocks of 16 tokens for 6 sequences of up to ~70 tokens: forces preemption. All six are
  // queued before the engine starts, so none can finish before the others arrive (CI once saw the
  // engine drain each request as it came, with no pressure at all).
  Harness h(kScript, /*blocks=*/12, /*slots=*/6, /*budget=*/64, /*max_len=*/192, /*start=*/false);
  std::vector<RequestHandle> hs;
  for (int i = 0; i < 6; ++i) hs.push_back(h.submit(std::string(40, 'a' + i), greedy(30)));
  h.engine->start();
  for (auto& x : hs) {
    auto r = h.collect(x);
    EXPECT_EQ(r.text, "Hello there, world!");
  }
  auto st = h.engine->stats();
  EXPECT_GT(st.num_preemptions_total, 0u);
  EXPECT_EQ(st.num_running, 0);
  EXPECT_EQ(st.kv_usage, 0.0);
}

TEST(Engine, AbortFreesCache) {
  Harness h(R"({"outputs":[{"text":"x"}],"step_delay_ms":2})");
  SamplingParams p = greedy(10000);
  p.ignore_eos = true;
  auto a = h.submit("hello", p);
  for (int i = 0; i < 100 && h.engine->stats().num_running == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(h.engine->stats().num_running, 1);
  EXPECT_GT(h.engine->stats().kv_usage, 0.0);
  h.engine->abort(a.seq_id);
  auto r = h.collect(a);
  EXPECT_EQ(r.finish, FinishReason::kAbort);
  for (int i = 0; i < 100 && h.engine->stats().num_running != 0; ++i) std::this_thread::sleep_for(5ms);
  auto st = h.engine->stats();
  EXPECT_EQ(st.num_running, 0);
  EXPECT_EQ(st.kv_usage, 0.0);
  EXPECT_EQ(st.request_success["abort"], 1u);
}

TEST(Engine, ShutdownAbortsInFlight) {
  Harness h(R"({"outputs":[{"text":"x"}],"step_delay_ms":1})");
  SamplingParams p = greedy(100000);
  p.ignore_eos = true;
  auto a = h.submit("hello", p);
  std::this_thread::sleep_for(20ms);
  h.engine->shutdown();
  auto r = h.collect(a);
  EXPECT_EQ(r.finish, FinishReason::kAbort);
  EXPECT_FALSE(h.engine->submit({"id", {1, 2}, p}).is_ok());
}

TEST(Engine, StopAcceptingRejectsNewWorkButFinishesOld) {
  Harness h(kScript);
  auto a = h.submit("hi", greedy());
  h.engine->stop_accepting();
  EngineRequest r;
  r.prompt_token_ids = {'x'};
  EXPECT_FALSE(h.engine->submit(r).is_ok());
  EXPECT_EQ(h.collect(a).text, "Hello there, world!");
}

TEST(Engine, RejectsTooLongAndEmptyPrompts) {
  Harness h(kScript, 64, 8, 32, /*max_len=*/50);
  EngineRequest r;
  r.prompt_token_ids.assign(50, 'a');
  EXPECT_FALSE(h.engine->submit(r).is_ok());
  r.prompt_token_ids.clear();
  EXPECT_FALSE(h.engine->submit(r).is_ok());
  r.prompt_token_ids = {999999};
  EXPECT_FALSE(h.engine->submit(r).is_ok());
}

TEST(Engine, LogprobsAndPromptLogprobs) {
  Harness h(kScript, 64, 8, /*budget=*/8);  // prompt split into chunks of 8
  SamplingParams p = greedy(4);
  p.logprobs = 3;
  p.prompt_logprobs = 2;
  const std::string prompt = "a prompt of some length";
  auto r = h.collect(h.submit(prompt, p));
  ASSERT_EQ(r.logprobs.size(), 4u);
  for (const auto& lp : r.logprobs) {
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_EQ(lp.top[0].token_id, lp.chosen.token_id);  // greedy picks the top-1
    EXPECT_EQ(lp.chosen.rank, 1);
    EXPECT_GE(lp.top[0].logprob, lp.top[1].logprob);
    EXPECT_LT(lp.chosen.logprob, 0.0f);
  }
  ASSERT_TRUE(r.prompt_logprobs.has_value());
  ASSERT_EQ(r.prompt_logprobs->size(), prompt.size());
  // Each prompt position's logprob must equal log_softmax of the scripted row that predicts it.
  std::vector<float> row(h.codec.vocab_size());
  for (size_t t = 1; t < prompt.size(); ++t) {
    const auto& e = (*r.prompt_logprobs)[t];
    EXPECT_EQ(e.chosen.token_id, static_cast<unsigned char>(prompt[t]));
    EXPECT_EQ(e.top.size(), 2u);
    ScriptedModel::fill_row(row.data(), row.size(), static_cast<int64_t>(t - 1),
                            static_cast<int32_t>(((t - 1) * 7919) % 256));
    double mx = -1e30, sum = 0;
    for (float v : row) mx = std::max<double>(mx, v);
    for (float v : row) sum += std::exp(v - mx);
    EXPECT_NEAR(e.chosen.logprob, row[static_cast<unsigned char>(prompt[t])] - mx - std::log(sum), 1e-4);
  }
}
