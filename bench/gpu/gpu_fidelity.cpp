// gpu_fidelity: every fixture model on the GPU backend against the CPU runtime (fp32), one table row
// per fixture and activation type (issue 13 §2, DESIGN.md §4.6):
//   logits   max |dlogit| over every position of the reference prompts, against the type's bound
//            (the 16-bit bound of tests/runtime/gpu_emu_model_test.cpp); a MoE is compared up to
//            the first position whose router margin on the CPU is below the 16-bit noise, where a
//            16-bit run may pick another expert and, through the GDN state, change every later token
//            (a bf16 MoE's figure is reported only, as in that test; see bounds_of).
//   greedy   32-token greedy continuations: identical, or the first divergence and whether it is a
//            near-tie (the CPU's top-2 logit gap there below twice the bound, or a router margin
//            below the noise anywhere before it).
//   batch    the prompts in one step against each alone, max |dlogit| (same bound, same positions).
//   chunk    each prompt prefilled in steps of 5 tokens against in one step, max |dlogit|.
//   ppl      sliding-window perplexity over the fixture's WikiText-2 ids (prompts.json "ppl": the
//            Qwen3.5 tokens of wiki.test.raw mod the vocabulary, its window and stride) on both, and
//            the relative difference (bound 1e-3; bf16 8e-3; a 16-bit MoE's reported only).
//            engine::perplexity, as `deltaserve ppl` computes it.
// Exit status 1 when a row misses a bound, 2 on bad arguments or a fixture that does not load.
//
//   gpu_fidelity [--dtype bfloat16,float16,float32] [--fixtures MODEL_DIR...] [--quick] [--ppl-tokens N]
//
// MODEL_DIR is tests/fixtures/models/NAME (its prompts are in tests/fixtures/reference/NAME); the
// default is every fixture, bf16 and fp16 (fp32 skips what the backend refuses: quantized experts).
// --quick (emulation): two prompts, 8 greedy tokens, 48 ppl tokens.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "deltaserve/engine/sequence_runner.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/runtime/fixture_list.h"
#include "tests/runtime/margin_probe.h"

using namespace ds;

namespace {

constexpr int64_t kSmallChunk = 5, kPplChunk = 512;

struct Options {
  std::vector<DType> dtypes = {DType::kBF16, DType::kF16};
  std::vector<std::string> fixtures;
  bool quick = false;
  int64_t ppl_tokens = 0;  // 0: every id of the fixture's ppl set (4096)
};

// The bound a type's logits are held to, the router margin below which a 16-bit run may pick another
// expert (the emulated model test's figures), and the relative perplexity bound (the 1e-3).
// bf16 keeps 3 fewer significant bits than fp16: its logit and perplexity bounds are 8 times
// fp16's. As in the emulated model test, a bf16 MoE's logits are reported, not held: below the
// router tie it still flips experts at margins of a few hundredths (0.9 seen on moe-bf16 with the
// tie at 0.02; at 0.04 two positions of 34 are left to compare). A 16-bit MoE's perplexity is
// reported, not held: an expert flipped at a near-tie changes that token and, through the GDN state,
// every later one (0.6-5% over 48 tokens under emulation).
struct Bounds {
  double logit, router_tie, ppl_rel;
};
Bounds bounds_of(DType t) {
  if (t == DType::kF32) return {5e-4, 0, 1e-3};
  if (t == DType::kF16) return {0.1, 0.01, 1e-3};
  return {0.8, 0.02, 8e-3};
}

struct Fixture {
  std::string name;
  model::ModelDesc desc;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int32_t> ppl_ids;
  int64_t ppl_ctx = 0, ppl_stride = 0, vocab = 0, greedy_tokens = 32;
};

// What one model gives on a fixture.
struct Run {
  std::vector<std::vector<float>> logits;  // per prompt, fed in one step: [len][V]
  std::vector<std::vector<int32_t>> greedy;
  std::vector<std::vector<float>> margin;  // per prompt and position (CPU runs; empty for dense models)
  double ppl = 0;
};

Result<std::unique_ptr<model::Qwen35Model>> make_model(const Fixture& f,
                                                       std::shared_ptr<backend::Backend> be) {
  int64_t longest = f.ppl_ctx + 1, total = kPplChunk;
  for (const auto& p : f.prompts) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()) + f.greedy_tokens + 1);
    total = std::max<int64_t>(total, static_cast<int64_t>(p.size()));
  }
  int64_t batch = 0;
  for (const auto& p : f.prompts) batch += static_cast<int64_t>(p.size());
  model::ModelOptions opt;
  opt.cache = engine::runner_cache_config(longest, static_cast<int>(f.prompts.size()));
  opt.max_step_tokens = std::max(total, batch);
  opt.max_step_seqs = static_cast<int>(f.prompts.size());
  return model::Qwen35Model::create(f.desc, std::move(be), dist::single_rank(), opt);
}

// Logits of every position of `ids`, fed in steps of `chunk` tokens.
Result<std::vector<float>> prompt_logits(model::Model& m, const std::vector<int32_t>& ids, int64_t chunk) {
  engine::SequenceRunner runner(m);
  DS_ASSIGN_OR_RETURN(int seq, runner.start());
  return runner.feed(seq, ids, true, chunk);
}

// Every prompt in one step (sequence s in state slot s and its own KV blocks); logits per prompt.
Result<std::vector<std::vector<float>>> batched_logits(model::Model& m,
                                                       const std::vector<std::vector<int32_t>>& ps) {
  const model::CacheConfig& c = m.cache_config();
  const int32_t per_seq = (c.num_kv_blocks - 1) / static_cast<int32_t>(ps.size());
  model::StepPlan plan;
  for (size_t s = 0; s < ps.size(); ++s) {
    model::SeqStep st;
    st.seq_id = static_cast<int64_t>(s);
    st.token_ids = ps[s];
    st.state_slot = static_cast<int32_t>(s);
    for (int64_t b = 0; b * c.block_size < static_cast<int64_t>(ps[s].size()); ++b)
      st.block_table.push_back(1 + static_cast<int32_t>(s) * per_seq + static_cast<int32_t>(b));
    st.all_logits = st.return_logits = true;
    plan.seqs.push_back(std::move(st));
  }
  DS_ASSIGN_OR_RETURN(model::StepOutput out, m.forward(plan));
  std::vector<std::vector<float>> r;
  for (size_t s = 0; s < ps.size(); ++s) {
    const auto begin = out.logits.begin() + out.row_offset[s] * out.vocab_size;
    r.emplace_back(begin, begin + static_cast<int64_t>(ps[s].size()) * out.vocab_size);
  }
  return r;
}

Result<std::vector<int32_t>> greedy(model::Model& m, const std::vector<int32_t>& ids, int64_t n) {
  engine::SamplingParams p;
  p.temperature = 0.0;
  DS_ASSIGN_OR_RETURN(engine::GenerateResult g,
                      engine::generate(m, ids, n, p, {}, static_cast<int64_t>(ids.size())));
  return g.tokens;
}

Result<double> perplexity(model::Model& m, const Fixture& f) {
  DS_ASSIGN_OR_RETURN(engine::PplResult r,
                      engine::perplexity(m, f.ppl_ids, f.ppl_ctx, f.ppl_stride, kPplChunk));
  return r.ppl();
}

Result<Run> run_fixture(model::Qwen35Model& m, const Fixture& f) {
  auto* probe = dynamic_cast<test::MarginProbe*>(&m.backend());
  Run r;
  for (const auto& ids : f.prompts) {
    DS_ASSIGN_OR_RETURN(std::vector<float> l, prompt_logits(m, ids, static_cast<int64_t>(ids.size())));
    r.logits.push_back(std::move(l));
    if (probe) r.margin.push_back(probe->margin);
    DS_ASSIGN_OR_RETURN(std::vector<int32_t> g, greedy(m, ids, f.greedy_tokens));
    r.greedy.push_back(std::move(g));
  }
  DS_ASSIGN_OR_RETURN(r.ppl, perplexity(m, f));
  return r;
}

// Positions of prompt p held to the bound: all of them, or for a MoE at 16 bits those before the
// first router margin below the tie.
size_t compared_positions(const Run& cpu, size_t p, int64_t vocab, double router_tie) {
  const size_t len = cpu.logits[p].size() / static_cast<size_t>(vocab);
  if (cpu.margin.empty() || cpu.margin[p].empty()) return len;
  size_t upto = 0;
  while (upto < len && upto < cpu.margin[p].size() && cpu.margin[p][upto] >= router_tie) ++upto;
  return upto;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n && i < a.size() && i < b.size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

// Where a greedy continuation first leaves the CPU's, and what the CPU saw there: its top-2 logit gap
// at that step and the smallest router margin over the tokens before it.
struct Divergence {
  int64_t at = -1;  // -1: identical
  double gap = 0;
  float margin = INFINITY;
  bool near_tie = false;
};

Result<Divergence> divergence(model::Qwen35Model& cpu, const std::vector<int32_t>& prompt,
                              const std::vector<int32_t>& want, const std::vector<int32_t>& got, Bounds b) {
  Divergence d;
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  if (i == want.size() && i == got.size()) return d;
  d.at = static_cast<int64_t>(i);
  std::vector<int32_t> ctx = prompt;
  ctx.insert(ctx.end(), want.begin(), want.begin() + static_cast<int64_t>(i));
  engine::SequenceRunner runner(cpu);
  DS_ASSIGN_OR_RETURN(int seq, runner.start());
  DS_ASSIGN_OR_RETURN(std::vector<float> last, runner.feed(seq, ctx, false, kPplChunk));
  std::partial_sort(last.begin(), last.begin() + 2, last.end(), std::greater<float>());
  d.gap = static_cast<double>(last[0]) - last[1];
  if (auto* probe = dynamic_cast<test::MarginProbe*>(&cpu.backend()))
    for (float m : probe->margin) d.margin = std::min(d.margin, m);
  d.near_tie = d.gap < 2 * b.logit || d.margin < b.router_tie;
  return d;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

bool parse_dtypes(const std::string& list, std::vector<DType>* out) {
  out->clear();
  std::string rest = list + ",";
  for (size_t c; (c = rest.find(',')) != std::string::npos; rest.erase(0, c + 1)) {
    const std::string d = rest.substr(0, c);
    if (d == "bfloat16")
      out->push_back(DType::kBF16);
    else if (d == "float16")
      out->push_back(DType::kF16);
    else if (d == "float32")
      out->push_back(DType::kF32);
    else
      return false;
  }
  return !out->empty();
}

const char* torch_name(DType t) {
  return t == DType::kBF16 ? "bfloat16" : t == DType::kF16 ? "float16" : "float32";
}

Result<Fixture> load_fixture(const std::string& model_dir, const Options& o) {
  namespace fs = std::filesystem;
  Fixture f;
  f.name = fs::path(model_dir).lexically_normal().filename().string();
  if (f.name.empty()) f.name = fs::path(model_dir).lexically_normal().parent_path().filename().string();
  const fs::path ref = fs::path(model_dir) / ".." / ".." / "reference" / f.name / "prompts.json";
  std::ifstream in(ref);
  if (!in) return not_found("no reference prompts at " + ref.string());
  const nlohmann::json doc = nlohmann::json::parse(in, nullptr, false);
  if (doc.is_discarded() || !doc.contains("prompts") || !doc.contains("ppl"))
    return invalid_argument(ref.string() + ": not a fixture reference");
  DS_ASSIGN_OR_RETURN(f.desc, model::load_model_dir(model_dir));
  f.vocab = f.desc.config.vocab_size;
  const size_t n_prompts = o.quick ? 2 : doc["prompts"].size();
  for (size_t p = 0; p < n_prompts && p < doc["prompts"].size(); ++p)
    f.prompts.push_back(doc["prompts"][p]["ids"].get<std::vector<int32_t>>());
  f.greedy_tokens = o.quick ? 8 : 32;
  f.ppl_ids = doc["ppl"]["ids"].get<std::vector<int32_t>>();
  const int64_t n = o.ppl_tokens > 0 ? o.ppl_tokens : o.quick ? 48 : static_cast<int64_t>(f.ppl_ids.size());
  if (static_cast<int64_t>(f.ppl_ids.size()) > n) f.ppl_ids.resize(static_cast<size_t>(n));
  f.ppl_ctx = std::min<int64_t>(doc["ppl"]["window"].get<int64_t>(), static_cast<int64_t>(f.ppl_ids.size()));
  f.ppl_stride = std::min<int64_t>(doc["ppl"]["stride"].get<int64_t>(), f.ppl_ctx);
  return f;
}

// One fixture at one activation type against the CPU run; prints its row (and a line per divergent
// continuation); returns whether every figure is within its bound.
Result<bool> check(const Fixture& f, model::Qwen35Model& cpu_model, const Run& cpu, DType dt) {
  const Bounds b = bounds_of(dt);
  DS_ASSIGN_OR_RETURN(std::shared_ptr<backend::Backend> be, backend::gpu::make_gpu_backend(0, {dt}));
  auto made = make_model(f, std::move(be));
  if (!made &&
      dt == DType::kF32) {  // the backend refuses quantized experts under fp32 (src/backend/README.md)
    std::printf("%-20s %-9s skipped: %s\n", f.name.c_str(), torch_name(dt), made.status().message().c_str());
    return true;
  }
  DS_ASSIGN_OR_RETURN(std::unique_ptr<model::Qwen35Model> m, std::move(made));
  DS_ASSIGN_OR_RETURN(Run gpu, run_fixture(*m, f));
  const size_t V = static_cast<size_t>(f.vocab);
  double logit = 0, batch = 0, chunk = 0;
  size_t compared = 0, total = 0;
  std::vector<size_t> upto;
  for (size_t p = 0; p < f.prompts.size(); ++p) {
    upto.push_back(compared_positions(cpu, p, f.vocab, b.router_tie));
    logit = std::max(logit, max_diff(gpu.logits[p], cpu.logits[p], upto[p] * V));
    compared += upto[p];
    total += f.prompts[p].size();
    DS_ASSIGN_OR_RETURN(std::vector<float> chunked, prompt_logits(*m, f.prompts[p], kSmallChunk));
    chunk = std::max(chunk, max_diff(chunked, gpu.logits[p], upto[p] * V));
  }
  DS_ASSIGN_OR_RETURN(std::vector<std::vector<float>> together, batched_logits(*m, f.prompts));
  for (size_t p = 0; p < f.prompts.size(); ++p)
    batch = std::max(batch, max_diff(together[p], gpu.logits[p], upto[p] * V));
  int same = 0;
  std::vector<std::string> notes;
  bool greedy_ok = true;
  for (size_t p = 0; p < f.prompts.size(); ++p) {
    DS_ASSIGN_OR_RETURN(Divergence d, divergence(cpu_model, f.prompts[p], cpu.greedy[p], gpu.greedy[p], b));
    if (d.at < 0) {
      ++same;
      continue;
    }
    greedy_ok = greedy_ok && d.near_tie;
    char line[256];
    std::snprintf(
        line, sizeof line,
        "    prompt %zu: greedy token %lld differs (CPU %d, GPU %d): %s (CPU top-2 gap %.3g%s)", p,
        static_cast<long long>(d.at), cpu.greedy[p][static_cast<size_t>(d.at)],
        static_cast<size_t>(d.at) < gpu.greedy[p].size() ? gpu.greedy[p][static_cast<size_t>(d.at)] : -1,
        d.near_tie ? "near-tie" : "NOT a near-tie", d.gap,
        std::isinf(d.margin) ? "" : fmt(", smallest router margin before it %.3g", d.margin).c_str());
    notes.push_back(line);
  }
  const double rel = std::fabs(gpu.ppl - cpu.ppl) / cpu.ppl;
  const bool moe = !cpu.margin.empty() && !cpu.margin[0].empty(), ppl_held = !moe || dt == DType::kF32;
  const bool logits_held = !moe || dt != DType::kBF16;
  const bool ok = (!logits_held || logit <= b.logit) && batch <= b.logit && chunk <= b.logit && greedy_ok &&
                  (!ppl_held || rel <= b.ppl_rel);
  char greedy_cell[32];
  std::snprintf(greedy_cell, sizeof greedy_cell, "%d/%zu same%s", same, f.prompts.size(),
                same == static_cast<int>(f.prompts.size()) ? ""
                : greedy_ok                                ? ", ties"
                                                           : ", FAIL");
  std::printf("%-20s %-9s %9.3g %7s %8s  %-16s %9.3g %9.3g  %10.5g %10.5g %9.2g %-6s  %s\n", f.name.c_str(),
              torch_name(dt), logit, logits_held ? fmt("%.2g", b.logit).c_str() : "(moe)",
              (std::to_string(compared) + "/" + std::to_string(total)).c_str(), greedy_cell, batch, chunk,
              cpu.ppl, gpu.ppl, rel, ppl_held ? fmt("<= %.0e", b.ppl_rel).c_str() : "(moe)",
              ok ? "ok" : "FAIL");
  for (const auto& n : notes) std::printf("%s\n", n.c_str());
  std::fflush(stdout);
  return ok;
}

int usage() {
  std::fprintf(stderr,
               "usage: gpu_fidelity [--dtype bfloat16,float16,float32] [--fixtures MODEL_DIR...] [--quick] "
               "[--ppl-tokens N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dtype" && i + 1 < argc) {
      if (!parse_dtypes(argv[++i], &o.dtypes)) return usage();
    } else if (a == "--fixtures") {
      while (i + 1 < argc && argv[i + 1][0] != '-') o.fixtures.push_back(argv[++i]);
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--ppl-tokens" && i + 1 < argc) {
      o.ppl_tokens = std::max(2, std::atoi(argv[++i]));
    } else {
      return usage();
    }
  }
  if (o.fixtures.empty())
    for (const auto& n : test::fixture_names()) o.fixtures.push_back(test::fixtures_dir() + "/models/" + n);
  std::printf(
      "GPU backend against the CPU runtime (fp32). logits: max |dlogit| <= bound over the positions "
      "compared (a MoE: before the first router margin < %.2g bf16 / %.2g fp16); greedy: %s-token "
      "continuations; batch: prompts in one step vs alone; chunk: prefill in steps of %lld vs one; "
      "ppl: WikiText-2 (%s tokens), relative difference\n",
      bounds_of(DType::kBF16).router_tie, bounds_of(DType::kF16).router_tie, o.quick ? "8" : "32",
      static_cast<long long>(kSmallChunk),
      o.ppl_tokens > 0 ? std::to_string(o.ppl_tokens).c_str()
      : o.quick        ? "48"
                       : "4096");
  std::printf("%-20s %-9s %9s %7s %8s  %-16s %9s %9s  %10s %10s %9s %-6s  %s\n", "fixture", "dtype", "logits",
              "bound", "compared", "greedy", "batch", "chunk", "ppl cpu", "ppl gpu", "rel", "bound",
              "result");
  bool all_ok = true;
  for (const auto& dir : o.fixtures) {
    auto f = load_fixture(dir, o);
    if (!f) {
      std::fprintf(stderr, "gpu_fidelity: %s: %s\n", dir.c_str(), f.status().message().c_str());
      return 2;
    }
    auto probe = std::make_shared<test::MarginProbe>();
    auto cpu_model = make_model(*f, probe);
    if (!cpu_model) {
      std::fprintf(stderr, "gpu_fidelity: %s on the CPU: %s\n", f->name.c_str(),
                   cpu_model.status().message().c_str());
      return 2;
    }
    auto cpu = run_fixture(**cpu_model, *f);
    if (!cpu) {
      std::fprintf(stderr, "gpu_fidelity: %s on the CPU: %s\n", f->name.c_str(),
                   cpu.status().message().c_str());
      return 2;
    }
    for (DType dt : o.dtypes) {
      auto ok = check(*f, **cpu_model, *cpu, dt);
      if (!ok) {
        std::printf("%-20s %-9s FAIL: %s\n", f->name.c_str(), torch_name(dt), ok.status().message().c_str());
        all_ok = false;
      } else {
        all_ok = all_ok && *ok;
      }
    }
  }
  return all_ok ? 0 : 1;
}
