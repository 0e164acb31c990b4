// `deltaserve ppl MODEL --file F [--ctx 2048] [--stride 512]`: sliding-window perplexity on the CPU
// runtime, measured as HF's sliding-window recipe (each window scores the tokens after the previous
// window's end; the first window all of them). --ids-file takes pre-tokenized ids.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
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
    "usage: deltaserve ppl MODEL (--file TEXT_FILE | --ids-file IDS_FILE) [flags]\n"
    "  --file F          text file, tokenized with the model's tokenizer (or --tokenizer)\n"
    "  --ids-file F      token ids (whitespace / comma separated, JSON array ok)\n"
    "  --ctx N           window length (default 2048)\n"
    "  --stride N        window step; each window scores its new tokens (default 512)\n"
    "  --max-tokens N    only the first N tokens of the input\n"
    "  --chunk N         tokens per forward step (default 512)\n"
    "  --tokenizer PATH  tokenizer.json or its directory (default: MODEL's, else build/tokenizers/qwen35)\n"
    "  --device auto|cuda|rocm|cpu  backend (default auto: a GPU when built with one and present)\n";

int run(const std::vector<std::string>& args) {
  std::string model_arg, file, ids_file, tokenizer_path, device = "auto";
  ds::model::DeviceKind device_kind = ds::model::DeviceKind::kAuto;
  int64_t ctx = 2048, stride = 512, max_tokens = 0, chunk = 512;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto next = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    const std::string* v = nullptr;
    if (a == "-h" || a == "--help") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "--file" && (v = next())) {
      file = *v;
    } else if (a == "--ids-file" && (v = next())) {
      ids_file = *v;
    } else if (a == "--ctx" && (v = next())) {
      if (!ds::cli::set_flag("ppl", ds::parse_int64(*v, a, 2), &ctx)) return 2;
    } else if (a == "--stride" && (v = next())) {
      if (!ds::cli::set_flag("ppl", ds::parse_int64(*v, a, 1), &stride)) return 2;
    } else if (a == "--max-tokens" && (v = next())) {
      if (!ds::cli::set_flag("ppl", ds::parse_int64(*v, a, 0), &max_tokens)) return 2;
    } else if (a == "--chunk" && (v = next())) {
      if (!ds::cli::set_flag("ppl", ds::parse_int64(*v, a, 1), &chunk)) return 2;
    } else if (a == "--device" && (v = next())) {
      if (!ds::cli::set_flag("ppl", ds::model::parse_device(*v), &device_kind)) return 2;
      device = *v;
    } else if (a == "--tokenizer" && (v = next())) {
      tokenizer_path = *v;
    } else if (!a.empty() && a[0] != '-' && model_arg.empty()) {
      model_arg = a;
    } else {
      std::fprintf(stderr, "deltaserve ppl: bad argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (model_arg.empty() || file.empty() == ids_file.empty()) {
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  auto desc = ds::model::load_model(model_arg);
  if (!desc) {
    std::fprintf(stderr, "error: %s\n", desc.status().message().c_str());
    return 1;
  }
  std::vector<int32_t> ids;
  if (!ids_file.empty()) {
    std::ifstream in(ids_file);
    if (!in) {
      std::fprintf(stderr, "error: cannot read %s\n", ids_file.c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string t = ss.str();
    for (char& c : t)
      if (c == ',' || c == '[' || c == ']') c = ' ';
    std::istringstream words(t);
    std::string w;
    while (words >> w) {
      char* end = nullptr;
      const long v = std::strtol(w.c_str(), &end, 10);
      if (*end != '\0' || v < 0) {
        std::fprintf(stderr, "error: %s: '%s' is not a token id\n", ids_file.c_str(), w.c_str());
        return 1;
      }
      ids.push_back(static_cast<int32_t>(v));
    }
  } else {
    auto tok = ds::cli::load_cli_tokenizer(tokenizer_path, desc->path, desc->config.vocab_size);
    if (!tok) {
      std::fprintf(stderr, "error: %s (use --ids-file or --tokenizer)\n", tok.status().message().c_str());
      return 1;
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "error: cannot read %s\n", file.c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    ids = tok->encode(ss.str());
  }
  if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(static_cast<size_t>(max_tokens));
  for (int32_t id : ids)
    if (id >= desc->config.vocab_size) {
      std::fprintf(stderr, "error: token id %d is outside the vocabulary (%lld)\n", id, static_cast<long long>(desc->config.vocab_size));
      return 1;
    }
  std::optional<ds::cli::LoadingLine> loading(std::in_place, desc->path);
  ds::model::ModelOptions opt;
  opt.cache = ds::engine::runner_cache_config(ctx + 1);
  opt.max_step_tokens = std::max<int64_t>(1, std::min(chunk, ctx));
  opt.max_step_seqs = 1;
  auto model = ds::cli::create_model_for_device(*desc, opt, device);
  loading.reset();
  if (!model) {
    std::fprintf(stderr, "error: %s\n", model.status().message().c_str());
    return 1;
  }
  ds::Timer timer;
  ds::cli::ProgressBar bar("windows");
  auto res = ds::engine::perplexity(**model, ids, ctx, stride, chunk,
                                   [&](int64_t done, int64_t total) { bar.update(done, total); });
  bar.finish();
  if (!res) {
    std::fprintf(stderr, "error: %s\n", res.status().message().c_str());
    return 1;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("ppl %.6f  (nll %.6f over %lld tokens, %lld windows, ctx %lld, stride %lld)\n", res->ppl(),
              res->nll_sum / static_cast<double>(res->n_scored), static_cast<long long>(res->n_scored),
              static_cast<long long>(res->windows), static_cast<long long>(ctx), static_cast<long long>(stride));
  std::fprintf(stderr, "%.1f s, peak RSS %.1f MiB\n", timer.seconds(), static_cast<double>(ru.ru_maxrss) / 1024.0);
  return 0;
}

}  // namespace

DS_COMMAND(ppl, "ppl", "sliding-window perplexity on the CPU runtime", run);
