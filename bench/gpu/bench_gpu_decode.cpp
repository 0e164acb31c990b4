// bench_gpu_decode: whole-model throughput on the GPU backend, offline (no engine, no server): decode
// tokens/s at several batch sizes (B sequences each prefilled with a short random prompt, then N decode
// steps of all B together, greedy-sampled on the device), and prefill tokens/s of one long prompt in
// chunks of max_num_batched_tokens. Each decode figure is also a fraction of its bytes roofline: the
// bytes one step must read over the read bandwidth a plain read kernel reaches in the same run
// (bench/gpu/bandwidth_probe.h). A step's bytes: the prepared weights it uses (for a MoE layer the
// expected distinct routed experts of B tokens, E (1 - (1 - k/E)^B), as if routing were uniform), the
// lm_head, B embedding rows, the KV cache read at the steps' mean context, and the GDN recurrent and
// conv states read and written. Prints a table; asserts nothing about speed.
//
//   bench_gpu_decode MODEL [--dtype bfloat16|float16] [--batches 1,8,64] [--decode N] [--prompt-len N]
//                    [--prefill-len N] [--max-num-batched-tokens N] [--chunked-gdn] [--enforce-eager] [--quick]
//
// Decode steps replay captured graphs, one per batch size, as `serve` runs them (--enforce-eager:
// every step eager).
// MODEL: a checkpoint directory (e.g. from bench/make_synthetic_qwen35.py --preset 35b-a3b-int4).
// --quick: batches 1 and 2, 2 decode steps, short prompts, a small bandwidth probe: a smoke run
// under emulation (timings meaningless).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/gpu/bandwidth_probe.h"
#include "bench/gpu/bench_util.h"
#include "deltaserve/core/timer.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "src/backend/gpu/gpu_backend.h"

using namespace ds;

namespace {

struct Options {
  std::string model, dtype = "bfloat16";
  std::vector<int> batches = {1, 8, 64};
  int64_t decode = 64, prompt_len = 128, prefill_len = 4096, chunk = 2048;
  bool chunked_gdn = false, quick = false, eager = false;
};

using bench::fail;
using bench::must;

int64_t blocks_for(int64_t tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

// The bytes of one decode step that do not depend on the weights' layout, per sequence: its
// embedding row, its KV read at context `ctx`, its GDN states read and written.
double per_seq_bytes(const model::ModelConfig& c, DType act, double ctx) {
  int attn = 0, gdn = 0;
  for (auto k : c.layer_types) (k == model::LayerKind::kFullAttention ? attn : gdn)++;
  const double state = static_cast<double>(c.linear_num_value_heads) * c.linear_key_head_dim * c.linear_value_head_dim;
  const double conv_dim =
      2.0 * c.linear_num_key_heads * c.linear_key_head_dim + static_cast<double>(c.linear_num_value_heads) * c.linear_value_head_dim;
  const double gdn_bytes = gdn * 2.0 * 4.0 * (state + (c.linear_conv_kernel_dim - 1) * conv_dim);
  const double kv_bytes = attn * 2.0 * c.num_kv_heads * c.head_dim * static_cast<double>(dtype_size(act)) * ctx;
  return static_cast<double>(c.hidden_size) * 2.0 + gdn_bytes + kv_bytes;
}

// Bytes one use of a routed expert (gate + up + down) reads, as the GPU backend prepares it: packed
// codes plus scales (and zeros when asymmetric), or the dense weight.
double expert_bytes(const model::ModelDesc& d) {
  for (const auto& L : d.layers) {
    if (!L.is_moe || L.moe.experts.empty()) continue;
    double b = 0;
    const auto& e = L.moe.experts[0];
    for (const model::LinearWeight* w : {&e.gate_proj, &e.up_proj, &e.down_proj})
      b += w->scheme.quantized()
               ? static_cast<double>(w->qweight.nbytes + w->scales.nbytes * (w->scheme.sym ? 1 : 2))
               : static_cast<double>(w->weight.nbytes);
    return b;
  }
  return 0;
}

class Bench {
 public:
  Bench(model::Qwen35Model& m, const Options& o) : m_(m), o_(o), rng_(1) {}

  // B sequences: prompts prefilled (whole prompts packed into steps of up to `chunk` tokens), one
  // untimed decode step, then o_.decode timed steps. Returns seconds per timed step.
  double decode(int B) {
    const int bs = m_.cache_config().block_size;
    const int64_t per_seq = blocks_for(o_.prompt_len + o_.decode + 2, bs);
    std::vector<model::SeqStep> seqs(static_cast<size_t>(B));
    for (int i = 0; i < B; ++i) {
      model::SeqStep& s = seqs[static_cast<size_t>(i)];
      s.seq_id = i;
      s.state_slot = i;
      for (int64_t b = 0; b < per_seq; ++b) s.block_table.push_back(static_cast<int32_t>(i * per_seq + b));
      s.token_ids = random_ids(o_.prompt_len);
      s.sampling = greedy_;
    }
    std::vector<int32_t> next(static_cast<size_t>(B));
    for (int first = 0; first < B;) {  // prefill
      model::StepPlan plan;
      int64_t tokens = 0;
      for (; first < B && (plan.seqs.empty() || tokens + o_.prompt_len <= o_.chunk); ++first) {
        plan.seqs.push_back(seqs[static_cast<size_t>(first)]);
        tokens += o_.prompt_len;
      }
      step(plan, &next, first - static_cast<int>(plan.seqs.size()));
    }
    for (auto& s : seqs) s.start_pos = o_.prompt_len;
    model::StepPlan plan;
    plan.seqs = seqs;
    Timer t;
    for (int64_t n = 0; n <= o_.decode; ++n) {
      if (n == 1) t.reset();
      for (int i = 0; i < B; ++i) plan.seqs[static_cast<size_t>(i)].token_ids = {next[static_cast<size_t>(i)]};
      step(plan, &next, 0);
      for (auto& s : plan.seqs) ++s.start_pos;
    }
    return t.seconds() / static_cast<double>(std::max<int64_t>(1, o_.decode));
  }

  // One sequence of prefill_len tokens in chunks; returns seconds.
  double prefill() {
    const int bs = m_.cache_config().block_size;
    model::SeqStep s;
    s.state_slot = 0;
    for (int64_t b = 0; b < blocks_for(o_.prefill_len + 1, bs); ++b) s.block_table.push_back(static_cast<int32_t>(b));
    const std::vector<int32_t> ids = random_ids(o_.prefill_len);
    std::vector<int32_t> next(1);
    Timer t;
    for (int64_t b = 0; b < o_.prefill_len; b += o_.chunk) {
      const int64_t n = std::min(o_.chunk, o_.prefill_len - b);
      model::StepPlan plan;
      plan.seqs.push_back(s);
      plan.seqs[0].start_pos = b;
      plan.seqs[0].token_ids.assign(ids.begin() + b, ids.begin() + b + n);
      if (b + n == o_.prefill_len) plan.seqs[0].sampling = greedy_;  // sampling ends the step on the host
      step(plan, &next, 0);
    }
    return t.seconds();
  }

 private:
  std::vector<int32_t> random_ids(int64_t n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& t : v) t = static_cast<int32_t>(rng_() % static_cast<uint32_t>(m_.vocab_size()));
    return v;
  }
  void step(const model::StepPlan& plan, std::vector<int32_t>* next, int first) {
    const model::StepOutput out = must(m_.forward(plan), "forward");
    for (size_t i = 0; i < plan.seqs.size(); ++i)
      if (plan.seqs[i].sampling) (*next)[static_cast<size_t>(first) + i] = std::max(0, out.sampled.at(i).token);
  }

  model::Qwen35Model& m_;
  const Options& o_;
  std::mt19937 rng_;
  backend::SamplingRow greedy_{.temperature = 0.0};
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  for (size_t p = 0; p < s.size();) {
    const size_t e = std::min(s.find(',', p), s.size());
    v.push_back(std::max(1, std::atoi(s.substr(p, e - p).c_str())));
    p = e + 1;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  // clang-format off
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool val = i + 1 < argc;
    if (a == "--dtype" && val) o.dtype = argv[++i];
    else if (a == "--batches" && val) o.batches = parse_list(argv[++i]);
    else if (a == "--decode" && val) o.decode = std::max(1LL, std::atoll(argv[++i]));
    else if (a == "--prompt-len" && val) o.prompt_len = std::max(1LL, std::atoll(argv[++i]));
    else if (a == "--prefill-len" && val) o.prefill_len = std::max(1LL, std::atoll(argv[++i]));
    else if (a == "--max-num-batched-tokens" && val) o.chunk = std::max(1LL, std::atoll(argv[++i]));
    else if (a == "--chunked-gdn") o.chunked_gdn = true;
    else if (a == "--quick") o.quick = true;
    else if (a == "--enforce-eager") o.eager = true;
    else if (a[0] != '-' && o.model.empty()) o.model = a;
    else {
      std::fprintf(stderr, "usage: bench_gpu_decode MODEL [--dtype bfloat16|float16] [--batches 1,8,64] [--decode N]\n"
                           "         [--prompt-len N] [--prefill-len N] [--max-num-batched-tokens N] [--chunked-gdn] [--enforce-eager] [--quick]\n");
      return 2;
    }
  }
  // clang-format on
  if (o.model.empty() || (o.dtype != "bfloat16" && o.dtype != "float16")) {
    std::fprintf(stderr, "bench_gpu_decode: needs MODEL; --dtype must be bfloat16 or float16\n");
    return 2;
  }
  if (o.quick) {
    o.batches = {1, 2};
    o.decode = 2;
    o.prompt_len = 4;
    o.prefill_len = 16;
    o.chunk = 8;
  }
  o.chunk = std::max(o.chunk, o.prompt_len);  // a decode batch's prompts are prefilled whole
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const DType act = o.dtype == "float16" ? DType::kF16 : DType::kBF16;
  std::shared_ptr<backend::Backend> be = must(backend::gpu::make_gpu_backend(0, {act}), "GPU backend");
  auto& gpu = static_cast<backend::gpu::GpuBackend&>(*be);
  const double bw = backend::gpu::read_bandwidth(gpu, o.quick ? 2 : 20, o.quick ? size_t{4} << 20 : size_t{4} << 30);

  Timer load;
  const model::ModelDesc desc = must(model::load_model(o.model), "load " + o.model);
  const int max_b = *std::max_element(o.batches.begin(), o.batches.end());
  const int bs = 16;
  const int64_t decode_len = o.prompt_len + o.decode + 2;
  model::ModelOptions mo;
  mo.cache.block_size = bs;
  mo.cache.num_kv_blocks =
      static_cast<int>(std::max(max_b * blocks_for(decode_len, bs), blocks_for(o.prefill_len + 1, bs)));
  mo.cache.num_state_slots = max_b;
  mo.max_step_tokens = std::max<int64_t>(o.chunk, max_b);
  mo.max_step_seqs = max_b;
  mo.max_model_len = std::max(decode_len, o.prefill_len + 1);
  mo.chunked_gdn_prefill = o.chunked_gdn;
  if (!o.eager) mo.graph_batch_sizes = o.batches;
  auto model = must(model::Qwen35Model::create(desc, be, dist::single_rank(), mo), "create the model");
  gpu.synchronize();
  const double load_s = load.seconds();
  Timer capture;
  const int graphs = must(model->capture_graphs(), "capture the decode graphs");
  const double capture_s = capture.seconds();
  const model::ModelConfig& c = model->config();

  // A step's weight bytes at batch B: everything but the routed experts once, plus the expected
  // distinct experts of each MoE layer.
  const double w_tok = static_cast<double>(model->weight_bytes_per_token());
  const double e_bytes = expert_bytes(desc);
  const int n_moe = static_cast<int>(std::count_if(desc.layers.begin(), desc.layers.end(),
                                                   [](const model::LayerWeights& l) { return l.is_moe; }));
  const double E = c.num_experts, k = c.num_experts_per_tok;
  const double fixed_w = w_tok - n_moe * k * e_bytes;
  std::printf("== bench_gpu_decode on %s, %s activations: read bandwidth %.0f GB/s%s ==\n", be->name().c_str(),
              o.dtype.c_str(), bw / 1e9, o.quick ? " (--quick: timings meaningless)" : "");
  std::printf("model %s: %d layers, hidden %lld, %s, load + prepare %.1f s, weights read per token %.1f MB\n",
              o.model.c_str(), c.num_layers, static_cast<long long>(c.hidden_size),
              c.is_moe ? ("MoE " + std::to_string(c.num_experts) + " experts top-" + std::to_string(c.num_experts_per_tok)).c_str()
                       : "dense",
              load_s, w_tok / 1e6);
  std::printf("decode steps: %s\n", graphs > 0 ? ("graphs for " + std::to_string(graphs) + " batch sizes, captured in " +
                                                   std::to_string(capture_s) + " s").c_str()
                                                : "eager (--enforce-eager)");
  std::printf("%-7s %6s %7s %10s %9s %8s %9s %10s %7s\n", "decode", "batch", "steps", "tok/s", "ms/step",
              "experts", "MB/step", "roof tok/s", "% roof");
  Bench bench(*model, o);
  for (int B : o.batches) {
    const double s = bench.decode(B);
    const double experts = c.is_moe ? E * (1.0 - std::pow(1.0 - k / E, B)) : 0.0;
    const double ctx = static_cast<double>(o.prompt_len) + 1.0 + static_cast<double>(o.decode) / 2.0;
    const double bytes = fixed_w + n_moe * experts * e_bytes + B * per_seq_bytes(c, act, ctx);
    const double tps = B / s, roof = bw > 0 ? B * bw / bytes : 0.0;
    std::printf("%-7s %6d %7lld %10.1f %9.2f %8.1f %9.1f %10.1f %6.1f%%\n", "", B, static_cast<long long>(o.decode), tps,
                s * 1e3, experts, bytes / 1e6, roof, roof > 0 ? 100.0 * tps / roof : 0.0);
  }
  const double ps = bench.prefill();
  std::printf("prefill %lld tokens in chunks of %lld: %.1f tok/s (%.2f s)\n", static_cast<long long>(o.prefill_len),
              static_cast<long long>(o.chunk), static_cast<double>(o.prefill_len) / ps, ps);
  return 0;
}
