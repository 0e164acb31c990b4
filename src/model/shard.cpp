// Host-side tensor-parallel shards of checkpoint weights (src/model/shard.h).
#include "src/model/shard.h"

#include <algorithm>
#include <cstring>

namespace ds::model {

namespace {

std::string tp_prefix(int tp) { return "tensor-parallel-size " + std::to_string(tp) + ": "; }

Status tp_divides(int64_t value, int tp, const std::string& what) {
  if (value % tp != 0)
    return invalid_argument("tensor-parallel-size " + std::to_string(tp) + " does not divide " + what + " (" +
                            std::to_string(value) + ")");
  return {};
}

int64_t total(const std::vector<Span>& spans) {
  int64_t n = 0;
  for (const Span& s : spans) n += s.size;
  return n;
}

// Copies columns `spans` of a row-major [rows][cols] array of elem-byte elements.
template <typename T>
void copy_cols(const void* src, int64_t rows, int64_t cols, size_t elem, const std::vector<Span>& spans,
               std::vector<T>* out) {
  const int64_t width = total(spans);
  out->resize(static_cast<size_t>(rows * width) * elem / sizeof(T));
  char* d = reinterpret_cast<char*>(out->data());
  const char* s = static_cast<const char*>(src);
  for (int64_t r = 0; r < rows; ++r)
    for (const Span& sp : spans) {
      const size_t bytes = static_cast<size_t>(sp.size) * elem;
      std::memcpy(d, s + (r * cols + sp.begin) * static_cast<int64_t>(elem), bytes);
      d += bytes;
    }
}

// Appends rows [begin, begin + count) of a row-major array of row_bytes rows to out.
template <typename T>
void append_rows(const void* src, size_t row_bytes, int64_t begin, int64_t count, std::vector<T>* out) {
  const size_t at = out->size() * sizeof(T), bytes = static_cast<size_t>(count) * row_bytes;
  out->resize((at + bytes) / sizeof(T));
  std::memcpy(reinterpret_cast<char*>(out->data()) + at,
              static_cast<const char*>(src) + static_cast<size_t>(begin) * row_bytes, bytes);
}

}  // namespace

backend::WeightSource weight_source(const LinearWeight& lw) {
  backend::WeightSource s;
  s.name = lw.name;
  s.n = lw.out_features;
  s.k = lw.in_features;
  s.bits = lw.scheme.bits;
  s.group_size = lw.scheme.group_size;
  s.sym = lw.scheme.sym;
  s.zeros_v2 = lw.scheme.zeros_v2;
  if (lw.scheme.quantized()) {
    s.qweight = static_cast<const int32_t*>(lw.qweight.data);
    s.qzeros = lw.qzeros.present() ? static_cast<const int32_t*>(lw.qzeros.data) : nullptr;
    s.scales = lw.scales.data;
    s.scales_dtype = lw.scales.dtype;
    s.scale_groups = lw.scales.shape.empty() ? 0 : lw.scales.shape[0];
    s.g_idx = lw.g_idx.present() ? static_cast<const int32_t*>(lw.g_idx.data) : nullptr;
  } else {
    s.weight = lw.weight.data;
    s.weight_dtype = lw.weight.dtype;
  }
  if (lw.bias.present()) {
    s.bias = lw.bias.data;
    s.bias_dtype = lw.bias.dtype;
  }
  return s;
}

std::vector<Span> column_spans(int64_t n, const std::vector<int64_t>& blocks, int rank, int tp) {
  std::vector<Span> spans;
  int64_t base = 0;
  const std::vector<int64_t> whole{n};
  for (int64_t b : blocks.empty() ? whole : blocks) {
    spans.push_back({base + rank * (b / tp), b / tp});
    base += b;
  }
  return spans;
}

std::vector<Span> kv_head_spans(int nkv, int head_dim, int rank, int tp) {
  const int per = kv_heads_per_rank(nkv, tp);
  const int first = nkv >= tp ? rank * per : rank / (tp / nkv);
  return {{int64_t{first} * head_dim, int64_t{per} * head_dim}};
}

Result<std::unique_ptr<ShardedWeight>> shard_column(const backend::WeightSource& full, const std::vector<Span>& spans) {
  auto w = std::make_unique<ShardedWeight>();
  backend::WeightSource& s = w->src;
  s = full;
  s.n = total(spans);
  for (const Span& sp : spans)
    if (sp.begin < 0 || sp.size <= 0 || sp.begin + sp.size > full.n)
      return invalid_argument(full.name + ": shard outside the weight's " + std::to_string(full.n) + " outputs");
  if (full.bits >= 16) {
    const size_t row = static_cast<size_t>(full.k) * dtype_size(full.weight_dtype);
    if (spans.size() == 1) {  // contiguous rows: the checkpoint's own memory
      s.weight = static_cast<const char*>(full.weight) + static_cast<size_t>(spans[0].begin) * row;
    } else {
      for (const Span& sp : spans) {
        append_rows(full.weight, row, sp.begin, sp.size, &w->weight);
      }
      s.weight = w->weight.data();
    }
  } else {
    const int pf = 32 / full.bits;
    for (const Span& sp : spans)
      if (sp.begin % pf != 0 || sp.size % pf != 0)
        return invalid_argument(full.name + ": output shard [" + std::to_string(sp.begin) + ", +" +
                                std::to_string(sp.size) + ") splits an int" + std::to_string(full.bits) + " word");
    copy_cols(full.qweight, full.k / pf, full.n, 4, spans, &w->qweight);
    s.qweight = w->qweight.data();
    copy_cols(full.scales, full.scale_groups, full.n, dtype_size(full.scales_dtype), spans, &w->scales);
    s.scales = w->scales.data();
    if (full.qzeros) {
      std::vector<Span> packed;
      for (const Span& sp : spans) packed.push_back({sp.begin / pf, sp.size / pf});
      copy_cols(full.qzeros, full.scale_groups, full.n / pf, 4, packed, &w->qzeros);
      s.qzeros = w->qzeros.data();
    }
  }
  if (full.bias) {
    copy_cols(full.bias, 1, full.n, dtype_size(full.bias_dtype), spans, &w->bias);
    s.bias = w->bias.data();
  }
  return w;
}

Result<std::unique_ptr<ShardedWeight>> shard_row(const backend::WeightSource& full, int rank, int tp) {
  if (full.k % tp != 0) return invalid_argument(tp_prefix(tp) + full.name + " in_features " + std::to_string(full.k) + " do not divide");
  auto w = std::make_unique<ShardedWeight>();
  backend::WeightSource& s = w->src;
  s = full;
  const int64_t kl = full.k / tp, k0 = rank * kl;
  s.k = kl;
  if (full.bits >= 16) {
    copy_cols(full.weight, full.n, full.k, dtype_size(full.weight_dtype), {{k0, kl}}, &w->weight);
    s.weight = w->weight.data();
  } else {
    const int pf = 32 / full.bits;
    if (kl % pf != 0) return invalid_argument(tp_prefix(tp) + full.name + ": in_features per rank split an int word");
    append_rows(full.qweight, static_cast<size_t>(full.n) * 4, k0 / pf, kl / pf, &w->qweight);
    s.qweight = w->qweight.data();
    // The groups this rank's inputs read: a contiguous run of whole groups keeps only those groups'
    // scales and zeros (renumbered); otherwise (act-order, channelwise) every group stays.
    std::vector<int32_t> group(static_cast<size_t>(kl));
    for (int64_t k = 0; k < kl; ++k)
      group[static_cast<size_t>(k)] = full.g_idx ? full.g_idx[k0 + k]
                                                 : static_cast<int32_t>(full.group_size > 0 ? (k0 + k) / full.group_size : 0);
    const auto [lo, hi] = std::minmax_element(group.begin(), group.end());
    const int64_t g0 = *lo, gn = *hi - *lo + 1;
    const bool own_groups = full.group_size > 0 && kl % full.group_size == 0 && k0 % full.group_size == 0 &&
                            gn == kl / full.group_size && g0 >= 0 && g0 + gn <= full.scale_groups;
    const int64_t keep0 = own_groups ? g0 : 0, keepn = own_groups ? gn : full.scale_groups;
    append_rows(full.scales, static_cast<size_t>(full.n) * dtype_size(full.scales_dtype), keep0, keepn, &w->scales);
    s.scales = w->scales.data();
    s.scale_groups = keepn;
    if (full.qzeros) {
      append_rows(full.qzeros, static_cast<size_t>(full.n / pf) * 4, keep0, keepn, &w->qzeros);
      s.qzeros = w->qzeros.data();
    }
    if (full.g_idx) {
      w->g_idx = std::move(group);
      for (int32_t& g : w->g_idx) g -= static_cast<int32_t>(keep0);
      s.g_idx = w->g_idx.data();
    }
  }
  if (rank != 0) s.bias = nullptr;  // added once, after the all-reduce
  return w;
}

Result<TensorView> shard_tensor_rows(const TensorView& t, int64_t row_elems, const std::vector<Span>& spans,
                                     std::vector<uint8_t>* keep) {
  if (!t.present()) return t;
  const int64_t rows = row_elems > 0 ? t.numel() / row_elems : 0;
  for (const Span& sp : spans)
    if (sp.begin < 0 || sp.begin + sp.size > rows) return corrupt(t.name + ": shard outside the tensor");
  const size_t row = static_cast<size_t>(row_elems) * dtype_size(t.dtype);
  keep->clear();
  for (const Span& sp : spans) {
    append_rows(t.data, row, sp.begin, sp.size, keep);
  }
  TensorView v = t;
  v.shape = {total(spans) * row_elems};
  v.data = keep->data();
  v.nbytes = keep->size();
  return v;
}

Status check_tp_config(const ModelConfig& c, int tp) {
  if (tp < 1) return invalid_argument("tensor-parallel-size must be at least 1");
  DS_RETURN_IF_ERROR(tp_divides(c.num_heads, tp, "num_attention_heads"));
  if (c.num_kv_heads % tp != 0 && tp % c.num_kv_heads != 0)
    return invalid_argument("tensor-parallel-size " + std::to_string(tp) + " and num_key_value_heads " +
                            std::to_string(c.num_kv_heads) + ": neither divides the other");
  DS_RETURN_IF_ERROR(tp_divides(c.linear_num_key_heads, tp, "linear_num_key_heads"));
  DS_RETURN_IF_ERROR(tp_divides(c.linear_num_value_heads, tp, "linear_num_value_heads"));
  DS_RETURN_IF_ERROR(tp_divides(c.vocab_size, tp, "vocab_size"));
  if (c.is_moe) {
    DS_RETURN_IF_ERROR(tp_divides(c.moe_intermediate_size, tp, "moe_intermediate_size"));
    DS_RETURN_IF_ERROR(tp_divides(c.shared_expert_intermediate_size, tp, "shared_expert_intermediate_size"));
  } else {
    DS_RETURN_IF_ERROR(tp_divides(c.intermediate_size, tp, "intermediate_size"));
  }
  return {};
}

// vLLM's words: "The output size is not aligned with the quantized weight shape" (gptq.py) for a
// column shard, "The input size is not aligned with the quantized weight shape" for a row shard.
Status check_quant_shard(const LinearWeight& w, TpSplit split, int tp) {
  const QuantScheme& s = w.scheme;
  if (!s.quantized() || tp == 1) return {};
  const int pf = 32 / s.bits;
  const std::string fmt = " (int" + std::to_string(s.bits) + ", group size " + std::to_string(s.group_size) + ")";
  if (split == TpSplit::kColumn || split == TpSplit::kVocab) {
    const int64_t n = w.out_features / tp;
    if (w.out_features % tp != 0 || n % pf != 0)
      return invalid_argument(tp_prefix(tp) + w.name + ": the output size is not aligned with the quantized weight "
                              "shape: " + std::to_string(w.out_features) + "/" + std::to_string(tp) +
                              " per rank is not a multiple of " + std::to_string(pf) + fmt +
                              ". Consider reducing tensor_parallel_size.");
  } else if (split == TpSplit::kRow) {
    const int64_t k = w.in_features / tp;
    const bool groups_whole = s.group_size <= 0 || k % s.group_size == 0;
    if (w.in_features % tp != 0 || k % pf != 0 || !groups_whole)
      return invalid_argument(tp_prefix(tp) + w.name + ": the input size is not aligned with the quantized weight "
                              "shape: " + std::to_string(w.in_features) + "/" + std::to_string(tp) +
                              " per rank does not hold whole groups" + fmt + ". Consider reducing tensor_parallel_size.");
  }
  return {};
}

}  // namespace ds::model
