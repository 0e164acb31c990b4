// `deltaserve generate MODEL (--prompt TEXT | --prompt-ids IDS) [-n N] [--temperature T] ...`:
// offline generation on the CPU runtime; prints the continuation and prefill / decode tokens/s.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "deltaserve/core/parse.h"
#include "deltaserve/core/timer.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "deltaserve/engine/sequence_runner.h"
#include "deltaserve/text/tokenizer/tokenizer.h"
#include "cli_tokenizer.h"
#include "model_factory.h"
#include "progress.h"

namespace {

const char* kUsage =
    "usage: deltaserve generate MODEL (--prompt TEXT | --prompt-ids IDS) [flags]\n"
    "  --prompt TEXT          prompt text (needs the model's tokenizer.json or --tokenizer)\n"
    "  --prompt-ids IDS       prompt token ids, comma or space separated\n"
    "  -n, --max-tokens N     tokens to generate (default 32)\n"
    "  --temperature T        0 = greedy (default 0)\n"
    "  --top-k K, --top-p P   sampling filters (default off)\n"
    "  --seed S               sampling seed (default 0)\n"
    "  --ignore-eos           do not stop at the model's EOS ids\n"
    "  --tokenizer PATH       tokenizer.json or its directory (default: MODEL's, else build/tokenizers/qwen35)\n"
    "  --prefill-chunk N      tokens per prefill step (default 512)\n"
    "  --isa scalar|avx2|avx512   cap the CPU kernels' instruction set\n"
    "  --chunked-gdn          chunked (C=64) GDN prefill instead of the token recurrence\n"
    "  --device auto|cuda|rocm|cpu  backend (default auto: a GPU when built with one and present)\n";

std::vector<int32_t> parse_ids(const std::string& s, bool* ok) {
  std::string t = s;
  for (char& c : t)
    if (c == ',' || c == '[' || c == ']') c = ' ';
  std::istringstream in(t);
  std::vector<int32_t> ids;
  std::string w;
  *ok = true;
  while (in >> w) {
    char* end = nullptr;
    const long v = std::strtol(w.c_str(), &end, 10);
    if (*end != '\0' || v < 0) *ok = false;
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

int run(const std::vector<std::string>& args) {
  std::string model_arg, prompt, prompt_ids, tokenizer_path, isa, device = "auto";
  ds::model::DeviceKind device_kind = ds::model::DeviceKind::kAuto;
  bool have_prompt = false, ignore_eos = false, chunked = false;
  int64_t n = 32, chunk = 512;
  ds::engine::SamplingParams so;
  so.temperature = 0.0;  // greedy unless --temperature
  int64_t seed = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto next = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    const std::string* v = nullptr;
    if (a == "-h" || a == "--help") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "--prompt" && (v = next())) {
      prompt = *v;
      have_prompt = true;
    } else if (a == "--prompt-ids" && (v = next())) {
      prompt_ids = *v;
    } else if ((a == "-n" || a == "--max-tokens") && (v = next())) {
      if (!ds::cli::set_flag("generate", ds::parse_int64(*v, a, 0), &n)) return 2;
    } else if (a == "--temperature" && (v = next())) {
      if (!ds::cli::set_flag("generate", ds::parse_double(*v, a, 0.0), &so.temperature)) return 2;
    } else if (a == "--top-k" && (v = next())) {
      if (!ds::cli::set_flag("generate", ds::parse_int64(*v, a, 0), &so.top_k)) return 2;
    } else if (a == "--top-p" && (v = next())) {
      if (!ds::cli::set_flag("generate", ds::parse_double(*v, a, 0.0, 1.0), &so.top_p)) return 2;
    } else if (a == "--seed" && (v = next())) {
      if (!ds::cli::set_flag("generate", ds::parse_int64(*v, a, 0), &seed)) return 2;
    } else if (a == "--tokenizer" && (v = next())) {
      tokenizer_path = *v;
    } else if (a == "--prefill-chunk" && (v = next())) {
      if (!ds::cli::set_flag("generate", ds::parse_int64(*v, a, 1), &chunk)) return 2;
    } else if (a == "--device" && (v = next())) {
      if (!ds::cli::set_flag("generate", ds::model::parse_device(*v), &device_kind)) return 2;
      device = *v;
    } else if (a == "--isa" && (v = next())) {
      isa = *v;
    } else if (a == "--ignore-eos") {
      ignore_eos = true;
    } else if (a == "--chunked-gdn") {
      chunked = true;
    } else if (!a.empty() && a[0] != '-' && model_arg.empty()) {
      model_arg = a;
    } else {
      std::fprintf(stderr, "deltaserve generate: bad argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (model_arg.empty() || (!have_prompt && prompt_ids.empty())) {
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  if (!isa.empty()) setenv("DS_CPU_ISA", isa.c_str(), 1);
  auto desc = ds::model::load_model(model_arg);
  if (!desc) {
    std::fprintf(stderr, "error: %s\n", desc.status().message().c_str());
    return 1;
  }
  std::optional<ds::text::Tokenizer> tok;
  {
    auto t = ds::cli::load_cli_tokenizer(tokenizer_path, desc->path, desc->config.vocab_size);
    if (t) tok = std::move(t).value();
    else if (have_prompt) {
      std::fprintf(stderr, "error: --prompt needs a tokenizer: %s (use --prompt-ids)\n", t.status().message().c_str());
      return 1;
    }
  }
  std::vector<int32_t> ids;
  if (have_prompt) {
    ids = tok->encode(prompt);
  } else {
    bool ok = true;
    ids = parse_ids(prompt_ids, &ok);
    if (!ok || ids.empty()) {
      std::fprintf(stderr, "error: --prompt-ids must be non-negative integers\n");
      return 2;
    }
  }
  so.seed = static_cast<uint64_t>(seed);
  ds::model::ModelOptions opt;
  opt.chunked_gdn_prefill = chunked;
  opt.cache = ds::engine::runner_cache_config(static_cast<int64_t>(ids.size()) + n + 1);
  opt.max_step_tokens = std::max<int64_t>(1, std::min<int64_t>(chunk, static_cast<int64_t>(ids.size())));
  opt.max_step_seqs = 1;
  opt.graph_batch_sizes = {1};  // on a GPU, decode steps replay one captured graph (as serve runs them)
  ds::Timer load_timer;
  std::optional<ds::cli::LoadingLine> loading(std::in_place, desc->path);
  auto model = ds::cli::create_model_for_device(*desc, opt, device);
  loading.reset();
  if (!model) {
    std::fprintf(stderr, "error: %s\n", model.status().message().c_str());
    return 1;
  }
  std::fprintf(stderr, "loaded %s on %s in %.2f s (%d layers, vocab %lld)\n", desc->path.c_str(),
               (*model)->backend_name().c_str(), load_timer.seconds(), desc->config.num_layers,
               static_cast<long long>(desc->config.vocab_size));
  std::vector<int64_t> stops;
  if (!ignore_eos) stops = desc->generation.eos_token_ids.empty() ? desc->config.eos_token_ids : desc->generation.eos_token_ids;
  auto res = ds::engine::generate(**model, ids, n, so, stops, chunk, [&](int32_t t) {
    if (tok) std::printf("%s", tok->decode(std::vector<int32_t>{t}).c_str());
    else std::printf("%d ", t);
    std::fflush(stdout);
  });
  std::printf("\n");
  if (!res) {
    std::fprintf(stderr, "error: %s\n", res.status().message().c_str());
    return 1;
  }
  std::printf("ids:");
  for (int32_t t : res->tokens) std::printf(" %d", t);
  std::printf("\n");
  std::fflush(stdout);  // the text ends its line before the statistics (stderr) start theirs
  const double decode_tokens = static_cast<double>(res->tokens.size() > 0 ? res->tokens.size() - 1 : 0);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tok/s); decode: %.0f tokens in %.3f s (%.2f tok/s); peak RSS %.1f MiB\n",
               static_cast<long long>(res->prompt_tokens), res->prefill_seconds,
               static_cast<double>(res->prompt_tokens) / std::max(1e-9, res->prefill_seconds), decode_tokens,
               res->decode_seconds, decode_tokens / std::max(1e-9, res->decode_seconds), static_cast<double>(ru.ru_maxrss) / 1024.0);
  return 0;
}

}  // namespace

DS_COMMAND(generate, "generate", "offline generation on the CPU runtime (prefill/decode tokens/s)", run);
