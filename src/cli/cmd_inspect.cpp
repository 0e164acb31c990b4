// `deltaserve inspect MODEL`: what the loader sees in a checkpoint and the memory it needs per GPU.
// Flag parsing only; the report is built in src/model/inspect.cpp.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "deltaserve/core/log.h"
#include "deltaserve/core/parse.h"
#include "deltaserve/model/inspect.h"
#include "model_factory.h"

namespace {

const char* kUsage =
    "usage: deltaserve inspect MODEL [--tensor-parallel-size N] [--max-model-len L]\n"
    "                          [--gpu-memory-utilization F] [--gpu-memory-gib G] [--max-num-seqs S]\n"
    "                          [--max-num-batched-tokens T] [--kv-cache-dtype D] [--speculative]\n"
    "                          [--no-vision] [--config-only] [--device auto|cuda|rocm|cpu]\n"
    "                          [--revision R] [--modules] [--json]\n"
    "\n"
    "MODEL is a local directory or a Hugging Face repo id already in the HF cache. Without *.safetensors\n"
    "in the directory (or with --config-only) sizes are estimated from config.json and the quantization rules.\n"
    "  --tensor-parallel-size, -tp N   ranks the weights are split over (default 1)\n"
    "  --max-model-len L               context length to plan for (default: max_position_embeddings)\n"
    "  --gpu-memory-utilization F      fraction of each GPU to use (default 0.9)\n"
    "  --gpu-memory-gib G              memory per GPU in GiB; enables the tokens/sequences fit\n"
    "  --device auto|cuda|rocm|cpu     without --gpu-memory-gib, take it from this device (default cpu: none)\n"
    "  --max-num-seqs S                concurrent sequences (default 256)\n"
    "  --max-num-batched-tokens T      prefill chunk the activation reserve is sized for (default 2048)\n"
    "  --kv-cache-dtype D              auto/bfloat16/float16 (2 bytes) or fp8 (1 byte)\n"
    "  --speculative                   count the MTP head (weights + its KV layer)\n"
    "  --no-vision                     do not count the vision encoder\n"
    "  --modules                       list every Linear module with its storage format\n"
    "  --json                          print the report as JSON\n";

int fail(const std::string& msg, int code) {
  std::string one_line = msg;
  for (char& c : one_line)
    if (c == '\n' || c == '\r') c = ' ';
  std::fprintf(stderr, "deltaserve inspect: error: %s\n", one_line.c_str());
  return code;
}

bool parse_int(const std::string& s, int64_t* out) {
  auto v = ds::parse_int64(s, "");
  if (v) *out = *v;
  return v.is_ok();
}

bool parse_double(const std::string& s, double* out) {
  auto v = ds::parse_double(s, "");
  if (v) *out = *v;
  return v.is_ok();
}

int run_inspect(const std::vector<std::string>& args) {
  ds::model::InspectOptions o;
  o.load.allow_config_only = true;
  std::string model;
  bool json = false;
  std::string device = "cpu";  // inspect plans for GPUs it need not be running on
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], value;
    bool has_value = false;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      has_value = true;
    }
    auto need = [&](std::string* v) -> bool {
      if (has_value) {
        *v = value;
        return true;
      }
      if (i + 1 >= args.size()) return false;
      *v = args[++i];
      return true;
    };
    std::string v;
    int64_t n = 0;
    double f = 0;
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--modules") {
      o.list_modules = true;
    } else if (a == "--config-only") {
      o.load.config_only = true;
    } else if (a == "--speculative") {
      o.memory.include_mtp = true;
    } else if (a == "--no-vision") {
      o.memory.include_vision = false;
    } else if (a == "--tensor-parallel-size" || a == "-tp") {
      if (!need(&v) || !parse_int(v, &n) || n < 1 || n > 1024) return fail(a + " needs a positive integer", 2);
      o.memory.tensor_parallel_size = static_cast<int>(n);
    } else if (a == "--max-model-len") {
      if (!need(&v) || !parse_int(v, &n) || n < 1) return fail(a + " needs a positive integer", 2);
      o.memory.max_model_len = n;
    } else if (a == "--max-num-seqs") {
      if (!need(&v) || !parse_int(v, &n) || n < 1 || n > (1 << 20)) return fail(a + " needs a positive integer", 2);
      o.memory.max_num_seqs = static_cast<int>(n);
    } else if (a == "--max-num-batched-tokens") {
      if (!need(&v) || !parse_int(v, &n) || n < 1) return fail(a + " needs a positive integer", 2);
      o.memory.max_num_batched_tokens = n;
    } else if (a == "--gpu-memory-utilization") {
      if (!need(&v) || !parse_double(v, &f) || f <= 0 || f > 1) return fail(a + " needs a number in (0, 1]", 2);
      o.memory.gpu_memory_utilization = f;
    } else if (a == "--gpu-memory-gib") {
      if (!need(&v) || !parse_double(v, &f) || f <= 0) return fail(a + " needs a positive number", 2);
      o.memory.gpu_memory_gib = f;
    } else if (a == "--kv-cache-dtype") {
      if (!need(&v)) return fail(a + " needs a value", 2);
      if (v == "auto" || v == "bfloat16" || v == "float16" || v == "half") o.memory.kv_cache_dtype_bytes = 2;
      else if (v.rfind("fp8", 0) == 0) o.memory.kv_cache_dtype_bytes = 1;
      else return fail(a + " must be auto, bfloat16, float16 or fp8", 2);
    } else if (a == "--device") {
      if (!need(&v)) return fail(a + " needs a value", 2);
      if (auto k = ds::model::parse_device(v); !k) return fail(k.status().message(), 2);
      device = v;
    } else if (a == "--revision") {
      if (!need(&v)) return fail(a + " needs a value", 2);
      o.load.revision = v;
    } else if (!a.empty() && a[0] == '-') {
      return fail("unknown flag '" + a + "' (see 'deltaserve inspect --help')", 2);
    } else if (model.empty()) {
      model = a;
    } else {
      return fail("unexpected argument '" + a + "'", 2);
    }
  }
  if (model.empty()) return fail("missing MODEL (see 'deltaserve inspect --help')", 2);
  if (o.memory.gpu_memory_gib <= 0) {
    auto g = ds::cli::device_memory_gib(device);
    if (!g) return fail(g.status().message(), 1);
    o.memory.gpu_memory_gib = *g;
  }
  // The report carries the loader's warnings; keep stderr for errors.
  ds::log::set_level(ds::log::Level::kError);
  auto report = ds::model::inspect_model(model, o);
  if (!report) return fail(report.status().message(), 1);
  if (json) std::printf("%s\n", report->dump(2).c_str());
  else std::fputs(ds::model::render_inspect_text(*report).c_str(), stdout);
  return 0;
}

}  // namespace

DS_COMMAND(inspect, "inspect", "describe a checkpoint: layers, formats, bytes, memory per GPU", run_inspect);
