// The GPU backend's sample and target_logprobs under emulation against the reference sampler
// (kernels/cpu/sampling.cpp via the reference backend), token for token on the same uniforms:
// every processor (allowed ids, repeated logit bias, masks, repetition / frequency / presence
// penalties), greedy, temperature, min_p, top_k, top_p and their combinations, rows with many
// equal logits (ties go to the lower id), everything masked, 248,320-wide rows and small ones,
// logprobs with top-k alternatives. Warp 32 and 64, three schedules with identical bytes.
#define DS_EMU 1
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "deltaserve/backend/reference_backend.h"
#include "kernels/emu/emu.h"
#include "src/backend/gpu/gpu_backend.h"

namespace ds {
namespace {

using backend::Act;
using backend::Backend;
using backend::SamplingRow;

struct Lists {  // owned storage behind a SamplingRow's pointers
  std::vector<int32_t> allowed, bias_ids, masked, prompt, output;
  std::vector<float> bias_vals;
  void attach(SamplingRow* r) const {
    r->allowed_ids = allowed.data();
    r->n_allowed = static_cast<int64_t>(allowed.size());
    r->bias_ids = bias_ids.data();
    r->bias_values = bias_vals.data();
    r->n_bias = static_cast<int64_t>(bias_ids.size());
    r->masked_ids = masked.data();
    r->n_masked = static_cast<int64_t>(masked.size());
    r->prompt_ids = prompt.data();
    r->n_prompt = static_cast<int64_t>(prompt.size());
    r->output_ids = output.data();
    r->n_output = static_cast<int64_t>(output.size());
  }
};

// logits [R][V]; `ties` rounds them to a coarse grid so many values are equal.
std::vector<float> make_logits(int64_t R, int64_t V, uint32_t seed, float scale, bool ties) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(R * V));
  for (auto& x : v) x = ties ? std::round(d(rng) * 2.0f) / 2.0f : d(rng);
  return v;
}

// tokens, then per row with logprobs: chosen id, logprob, rank, top ids and logprobs.
std::vector<double> run_sample(Backend& be, const std::vector<float>& logits, int64_t R, int64_t V,
                               const std::vector<SamplingRow>& rows) {
  auto buf = be.alloc(logits.size() * 4, "logits").value();
  be.upload(buf->data(), logits.data(), logits.size() * 4);
  std::vector<backend::SampleResult> res(static_cast<size_t>(R));
  be.sample({buf->data(), DType::kF32, R, V, V}, rows.data(), res.data());
  std::vector<double> out;
  for (const auto& r : res) {
    out.push_back(r.token);
    if (!r.logprobs) continue;
    out.insert(out.end(), {static_cast<double>(r.logprobs->chosen.token_id), r.logprobs->chosen.logprob,
                           static_cast<double>(r.logprobs->chosen.rank)});
    for (const auto& t : r.logprobs->top) out.insert(out.end(), {static_cast<double>(t.token_id), t.logprob, static_cast<double>(t.rank)});
  }
  return out;
}

template <typename F>
void compare(const std::string& name, F body) {
  auto ref = backend::make_reference_backend();
  const std::vector<double> want = body(*ref);
  for (int warp : {32, 64}) {
    std::vector<double> first;
    for (auto sched : {emu::Schedule::kInOrder, emu::Schedule::kReverse, emu::Schedule::kRandom}) {
      emu::Options o;
      o.schedule = sched;
      o.warp_size = warp;
      o.seed = 3;
      emu::ScopedOptions scoped(o);
      auto gpu = backend::gpu::make_gpu_backend(0, {});
      ASSERT_TRUE(gpu.is_ok()) << gpu.status().message();
      ASSERT_TRUE(gpu.value()->reserve_step({16, 4, 4, 4}).is_ok());
      const std::vector<double> got = body(*gpu.value());
      ASSERT_EQ(got.size(), want.size()) << name;
      for (size_t i = 0; i < got.size(); ++i)  // ids and ranks exact, logprobs to fp32 rounding
        ASSERT_NEAR(got[i], want[i], std::min(0.4, 2e-5 * std::max(1.0, std::fabs(want[i]))))
            << name << " warp " << warp << " " << emu::schedule_name(sched) << " at " << i;
      if (first.empty()) first = got;
      else EXPECT_EQ(first, got) << name << ": schedule " << emu::schedule_name(sched) << " changed the result";
    }
  }
}

// Each configuration on every row of `logits` with several uniforms.
void sample_configs(const std::string& name, int64_t R, int64_t V, bool ties, const std::vector<SamplingRow>& configs,
                    const Lists& lists) {
  const std::vector<float> logits = make_logits(R, V, 17, 3.0f, ties);
  std::vector<SamplingRow> rows;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (const auto& c : configs)
    for (int64_t r = 0; r < R; ++r) {
      SamplingRow row = c;
      lists.attach(&row);
      row.uniform = u(rng);
      rows.push_back(row);
    }
  // The configurations repeat over the rows: one call per configuration block keeps rows == R.
  compare(name, [&](Backend& be) {
    std::vector<double> all;
    for (size_t c = 0; c < configs.size(); ++c) {
      const std::vector<SamplingRow> part(rows.begin() + static_cast<int64_t>(c) * R, rows.begin() + static_cast<int64_t>(c + 1) * R);
      const auto got = run_sample(be, logits, R, V, part);
      all.insert(all.end(), got.begin(), got.end());
    }
    return all;
  });
}

SamplingRow cfg(double temp, int64_t top_k, double top_p, double min_p, int logprobs = -1) {
  SamplingRow r;
  r.temperature = temp;
  r.top_k = top_k;
  r.top_p = top_p;
  r.min_p = min_p;
  r.logprobs = logprobs;
  return r;
}

const std::vector<SamplingRow> kConfigs = {
    cfg(0.0, 0, 1.0, 0.0, 3), cfg(1.0, 0, 1.0, 0.0), cfg(0.7, 5, 1.0, 0.0, 2), cfg(1.3, 0, 0.8, 0.0),
    cfg(1.0, 8, 0.5, 0.0, 0), cfg(0.9, 0, 1.0, 0.1), cfg(1.0, 20, 0.9, 0.05, 5), cfg(2.0, 3, 0.0, 0.0)};

TEST(GpuEmuSample, SmallRows) {
  sample_configs("V=50", 4, 50, false, kConfigs, {});
  sample_configs("V=130 ties", 3, 130, true, kConfigs, {});
}

TEST(GpuEmuSample, Processors) {
  Lists l;
  l.allowed = {3, 7, 7, 11, 40, 41, 42, 99, 120, -5, 1000};
  l.bias_ids = {7, 7, 40, 5, 99};  // 5 is not allowed: stays -inf
  l.bias_vals = {1.5f, 0.25f, -3.0f, 9.0f, 2.0f};
  l.masked = {42, 500};
  l.prompt = {3, 3, 11, 120, 7};
  l.output = {40, 40, 41, 99, 40};
  std::vector<SamplingRow> configs = kConfigs;
  for (auto& c : configs) {
    c.repetition_penalty = 1.3;
    c.frequency_penalty = 0.4;
    c.presence_penalty = 0.2;
  }
  sample_configs("processors", 3, 130, true, configs, l);
  Lists masked_all;  // every allowed id masked: greedy and sampling fall back to argmax (id 0)
  masked_all.allowed = {1, 2};
  masked_all.masked = {1, 2};
  sample_configs("all masked", 2, 64, false, {cfg(0.0, 0, 1.0, 0.0, 1), cfg(1.0, 4, 0.9, 0.0, 1)}, masked_all);
}

TEST(GpuEmuSample, VocabWideRows) {
  const int64_t V = 248320;
  sample_configs("V=248320", 2, V, false,
                 {cfg(0.0, 0, 1.0, 0.0, 20), cfg(1.0, 50, 0.9, 0.0, 1), cfg(0.8, 0, 0.95, 0.0), cfg(1.0, 0, 1.0, 0.02)}, {});
  // A flat, tied distribution: top_p needs tens of thousands of tokens, cut inside a tie group.
  sample_configs("V=248320 flat", 1, V, true, {cfg(5.0, 0, 0.6, 0.0), cfg(4.0, 30000, 0.7, 0.0)}, {});
}

TEST(GpuEmuSample, TargetLogprobs) {
  const int64_t R = 5, V = 300;
  const std::vector<float> logits = make_logits(R, V, 23, 2.0f, true);
  compare("target_logprobs", [&](Backend& be) {
    auto buf = be.alloc(logits.size() * 4, "logits").value();
    be.upload(buf->data(), logits.data(), logits.size() * 4);
    const std::vector<int32_t> targets = {4, -1, 299, 0, 150}, k = {0, 3, 7, 64, 70};
    std::vector<backend::PositionLogprobs> out(static_cast<size_t>(R));
    be.target_logprobs({buf->data(), DType::kF32, R, V, V}, targets.data(), k.data(), out.data());
    std::vector<double> v;
    for (int64_t r = 0; r < R; ++r) {
      if (targets[static_cast<size_t>(r)] < 0) continue;
      const auto& p = out[static_cast<size_t>(r)];
      v.insert(v.end(), {static_cast<double>(p.chosen.token_id), p.chosen.logprob, static_cast<double>(p.chosen.rank)});
      for (const auto& t : p.top) v.insert(v.end(), {static_cast<double>(t.token_id), t.logprob, static_cast<double>(t.rank)});
    }
    return v;
  });
}

}  // namespace
}  // namespace ds
