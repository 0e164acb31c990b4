// GpuBackend core: memory, weights, cache pools, step metadata (plan). The ops live in gpu_ops_*.cpp.
#include "src/backend/gpu/gpu_backend.h"
#include "src/backend/gpu/gpu_ops_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ds::backend::gpu {

namespace {

size_t align16(size_t x) { return (x + 15) & ~size_t{15}; }

std::string gib(size_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return b;
}

}  // namespace

GpuBackend::GpuBackend(std::unique_ptr<Runtime> rt, GpuOptions options) : rt_(std::move(rt)), options_(options) {}
GpuBackend::~GpuBackend() = default;

std::string GpuBackend::name() const {
  return std::string(vendor_name(compiled_vendor())) + ":" + rt_->info().name + " (" + rt_->info().arch + ", " +
         dtype_name(options_.activation_dtype) + ")";
}

std::string dims(const Act& a) {
  return std::to_string(a.rows) + "x" + std::to_string(a.cols) + (a.contiguous() ? "" : "/ld" + std::to_string(a.ld)) +
         " " + dtype_name(a.dtype);
}

void op_fail(const char* op, const std::string& what) {
  std::fprintf(stderr, "deltaserve: %s: %s\n", op, what.c_str());
  std::abort();
}

void GpuBackend::launch_failed(const char* op, const std::string& shapes, const Status& s) const {
  op_fail(op, shapes + ": fatal GPU error: " + s.message());
}

Result<std::unique_ptr<DeviceBuffer>> GpuBackend::alloc(size_t bytes, const std::string& what) {
  DS_ASSIGN_OR_RETURN(void* p, rt_->malloc(std::max<size_t>(bytes, 1), what));
  return std::unique_ptr<DeviceBuffer>(new GpuBuffer(rt_.get(), p, bytes));
}

// Memory ops have no error channel either: a failed copy leaves the device unusable.
void GpuBackend::upload(void* dst, const void* host, size_t bytes) {
  Status s = rt_->copy_h2d(dst, host, bytes);
  // The source is the caller's memory: it may be freed or reused as soon as we return.
  if (s.is_ok()) s = rt_->synchronize();
  if (!s.is_ok()) op_fail("upload", std::to_string(bytes) + " bytes: " + s.message());
}

void GpuBackend::download(void* host, const void* src, size_t bytes) {
  Status s = rt_->copy_d2h(host, src, bytes);
  if (s.is_ok()) s = rt_->synchronize();
  if (!s.is_ok()) op_fail("download", std::to_string(bytes) + " bytes: " + s.message());
}

void GpuBackend::fill_zero(void* dst, size_t bytes) {
  Status s = rt_->memset(dst, 0, bytes);
  if (!s.is_ok()) op_fail("fill_zero", std::to_string(bytes) + " bytes: " + s.message());
}

// One copy when the rows are back to back on both sides, else one per row (the communicators' column
// blocks: a few rows of logits per step).
void GpuBackend::copy_rows(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
                           size_t rows) {
  const bool packed = dst_pitch == width_bytes && src_pitch == width_bytes;
  Status s;
  if (packed) s = rt_->copy_d2d(dst, src, width_bytes * rows);
  for (size_t r = 0; !packed && r < rows && s.is_ok(); ++r)
    s = rt_->copy_d2d(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch,
                      width_bytes);
  if (!s.is_ok())
    op_fail("copy_rows", std::to_string(rows) + " rows of " + std::to_string(width_bytes) + " bytes: " + s.message());
}

void GpuBackend::synchronize() {
  Status s = rt_->synchronize();
  if (!s.is_ok()) op_fail("synchronize", "at the step boundary: " + s.message());
}

Result<std::unique_ptr<PreparedWeight>> GpuBackend::prepare_weight(const WeightSource& src) {
  if (src.bits != 16) {
    if ((src.bits != 4 && src.bits != 8) || src.qweight == nullptr || src.scales == nullptr || src.n <= 0 ||
        src.k <= 0 || src.k % (32 / src.bits) != 0 || src.scale_groups <= 0 ||
        (src.scales_dtype != DType::kF16 && src.scales_dtype != DType::kBF16))
      return invalid_argument(src.name + ": unsupported GPTQ layout for the GPU backend");
    if (src.g_idx != nullptr)
      for (int64_t i = 0; i < src.k; ++i)
        if (src.g_idx[i] < 0 || src.g_idx[i] >= src.scale_groups)
          return corrupt(src.name + ": g_idx[" + std::to_string(i) + "] out of range");
    DS_ASSIGN_OR_RETURN(auto q, prepare_quant(src));
    if (q) return Result<std::unique_ptr<PreparedWeight>>(std::move(q));
    return prepare_gptq(src);
  }
  if (src.weight == nullptr) return invalid_argument(src.name + ": dense weight data missing");
  if (src.weight_dtype != DType::kBF16 && src.weight_dtype != DType::kF16 && src.weight_dtype != DType::kF32)
    return invalid_argument(src.name + ": dense weights must be bf16, fp16 or fp32");
  auto w = std::make_unique<GpuDenseWeight>();
  w->n = src.n;
  w->k = src.k;
  w->dtype = src.weight_dtype;
  const size_t bytes = static_cast<size_t>(src.n * src.k) * dtype_size(src.weight_dtype);
  DS_ASSIGN_OR_RETURN(auto buf, alloc(bytes, src.name));
  DS_RETURN_IF_ERROR(upload_weight(buf->data(), src.weight, bytes));
  w->w = buf->data();
  w->bytes = bytes;
  weights_.push_back(std::move(buf));
  if (src.bias != nullptr) {
    std::vector<float> b(static_cast<size_t>(src.n));
    for (int64_t i = 0; i < src.n; ++i) b[static_cast<size_t>(i)] = host_float(src.bias_dtype, src.bias, i);
    DS_ASSIGN_OR_RETURN(auto bb, alloc(b.size() * sizeof(float), src.name + " bias"));
    DS_RETURN_IF_ERROR(upload_weight(bb->data(), b.data(), b.size() * sizeof(float)));
    w->bias = static_cast<float*>(bb->data());
    weights_.push_back(std::move(bb));
  }
  return std::unique_ptr<PreparedWeight>(std::move(w));
}

// The checkpoint's GPTQ tensors uploaded as they are (the fallback kernel reads that layout).
Result<std::unique_ptr<PreparedWeight>> GpuBackend::prepare_gptq(const WeightSource& src) {
  auto w = std::make_unique<GpuGptqWeight>();
  w->n = src.n;
  w->k = src.k;
  w->bits = src.bits;
  w->group_size = src.group_size > 0 ? src.group_size : static_cast<int>(src.k);
  w->sym = src.sym || src.qzeros == nullptr;
  w->zeros_v2 = src.zeros_v2;
  w->bf16_scales = src.scales_dtype == DType::kBF16;
  auto put = [&](const void* host, size_t bytes, const char* part) -> Result<void*> {
    DS_ASSIGN_OR_RETURN(auto buf, alloc(bytes, src.name + " " + part));
    DS_RETURN_IF_ERROR(upload_weight(buf->data(), host, bytes));
    void* p = buf->data();
    weights_.push_back(std::move(buf));
    w->bytes += bytes;
    return p;
  };
  const size_t n = static_cast<size_t>(src.n), k = static_cast<size_t>(src.k), g = static_cast<size_t>(src.scale_groups);
  DS_ASSIGN_OR_RETURN(void* qw, put(src.qweight, k * static_cast<size_t>(src.bits) / 32 * n * 4, "qweight"));
  w->qweight = static_cast<const int32_t*>(qw);
  DS_ASSIGN_OR_RETURN(void* sc, put(src.scales, g * n * 2, "scales"));
  w->scales = static_cast<const uint16_t*>(sc);
  if (!w->sym) {
    DS_ASSIGN_OR_RETURN(void* qz, put(src.qzeros, g * (n * static_cast<size_t>(src.bits) / 32) * 4, "qzeros"));
    w->qzeros = static_cast<const int32_t*>(qz);
  }
  if (src.g_idx != nullptr) {
    DS_ASSIGN_OR_RETURN(void* gi, put(src.g_idx, k * 4, "g_idx"));
    w->g_idx = static_cast<const int32_t*>(gi);
  } else if ((k + static_cast<size_t>(w->group_size) - 1) / static_cast<size_t>(w->group_size) > g) {
    return corrupt(src.name + ": fewer scale groups than K / group_size");
  }
  if (src.bias != nullptr) {
    std::vector<float> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = host_float(src.bias_dtype, src.bias, static_cast<int64_t>(i));
    DS_ASSIGN_OR_RETURN(void* bb, put(b.data(), n * 4, "bias"));
    w->bias = static_cast<float*>(bb);
  }
  return std::unique_ptr<PreparedWeight>(std::move(w));
}

Result<EmbeddingTable> GpuBackend::prepare_embedding(const EmbeddingTable& host) {
  const size_t bytes = static_cast<size_t>(host.rows * host.dim) * dtype_size(host.dtype);
  DS_ASSIGN_OR_RETURN(auto buf, alloc(bytes, "embed_tokens"));
  DS_RETURN_IF_ERROR(upload_weight(buf->data(), host.data, bytes));
  EmbeddingTable t = host;
  t.data = buf->data();
  weights_.push_back(std::move(buf));
  return t;
}

// The source may be reused once upload() returns (it is copied into pinned staging); the device
// copy is complete in stream order, so every later op sees it.
Status GpuBackend::upload_weight(void* dst, const void* src, size_t bytes) {
  if (!uploader_) uploader_ = std::make_unique<WeightUploader>(*rt_);
  return uploader_->upload(dst, src, bytes);
}

Status GpuBackend::finish_uploads() {
  if (!uploader_) return Status::ok();
  Status s = uploader_->finish();
  uploader_.reset();
  return s;
}

Status GpuBackend::allocate_cache(const CacheSpec& spec) {
  DS_RETURN_IF_ERROR(finish_uploads());
  kv_k_.clear();
  kv_v_.clear();
  gdn_pool_.clear();
  cache_ = spec;
  const size_t act = dtype_size(options_.activation_dtype);
  const size_t kv_bytes =
      static_cast<size_t>(spec.num_kv_blocks) * static_cast<size_t>(spec.block_size) * spec.kv_heads * spec.head_dim * act;
  for (int l = 0; l < spec.num_attn_layers; ++l) {
    DS_ASSIGN_OR_RETURN(auto k, alloc(kv_bytes, "KV cache (K, attention layer " + std::to_string(l) + ")"));
    DS_ASSIGN_OR_RETURN(auto v, alloc(kv_bytes, "KV cache (V, attention layer " + std::to_string(l) + ")"));
    kv_k_.push_back(std::move(k));
    kv_v_.push_back(std::move(v));
  }
  ssm_floats_ = static_cast<int64_t>(spec.v_heads) * spec.v_dim * spec.k_dim;
  gdn_slot_floats_ = ssm_floats_ + static_cast<int64_t>(std::max(spec.conv_kernel - 1, 0)) * spec.conv_dim;
  const size_t pool = static_cast<size_t>(gdn_slot_floats_) * static_cast<size_t>(spec.num_state_slots) * sizeof(float);
  for (int l = 0; l < spec.num_gdn_layers; ++l) {
    DS_ASSIGN_OR_RETURN(auto p, alloc(pool, "GDN state slots (layer " + std::to_string(l) + ")"));
    DS_RETURN_IF_ERROR(rt_->memset(p->data(), 0, pool));
    gdn_pool_.push_back(std::move(p));
  }
  return rt_->synchronize();
}

size_t GpuBackend::cache_bytes() const {
  size_t b = 0;
  for (const auto& v : {&kv_k_, &kv_v_, &gdn_pool_})
    for (const auto& buf : *v) b += buf->bytes();
  return b;
}

float* GpuBackend::ssm_state(int layer) const { return static_cast<float*>(gdn_pool_.at(static_cast<size_t>(layer))->data()); }
float* GpuBackend::conv_state(int layer) const { return ssm_state(layer) + ssm_floats_; }

Status GpuBackend::reserve_step(const StepLimits& limits) {
  DS_RETURN_IF_ERROR(finish_uploads());
  limits_ = limits;
  const size_t T = static_cast<size_t>(limits.max_tokens), S = static_cast<size_t>(limits.max_seqs);
  const size_t meta = align16(T * 4) + align16(T * 24) + align16((S + 1) * 4) + align16(S * 8) + align16(S * 4) +
                      align16(S * static_cast<size_t>(limits.max_blocks_per_seq) * 4) + align16(S * 4) +
                      align16(T * 4) + align16(T * 4) + 64;
  DS_ASSIGN_OR_RETURN(meta_buf_, alloc(meta, "step metadata"));
  meta_host_.assign(meta, 0);
  const size_t scratch = std::max({attention_scratch_bytes(limits, cache_), gdn_scratch_bytes(limits, cache_),
                                   moe_scratch_bytes(limits, cache_), sample_scratch_bytes(limits, cache_), size_t{256}});
  DS_ASSIGN_OR_RETURN(scratch_, alloc(scratch, "op scratch"));
  repack_tmp_.reset();  // the load is over
  return reserve_quant();
}

Status GpuBackend::plan(const StepMeta& m) {
  const int64_t T = m.num_tokens();
  const int S = m.num_seqs();
  if (!meta_buf_) return internal_error("plan() before reserve_step()");
  if (T > limits_.max_tokens || S > limits_.max_seqs || m.blocks_per_seq > limits_.max_blocks_per_seq ||
      static_cast<int64_t>(m.logit_rows.size()) > limits_.max_tokens)
    return invalid_argument("step of " + std::to_string(T) + " tokens, " + std::to_string(S) + " sequences, " +
                            std::to_string(m.blocks_per_seq) + " blocks per sequence exceeds the reserved limits (" +
                            std::to_string(limits_.max_tokens) + ", " + std::to_string(limits_.max_seqs) + ", " +
                            std::to_string(limits_.max_blocks_per_seq) + ")");
  if (m.positions.size() != static_cast<size_t>(T) * 3 || m.cu_seqlens.size() != static_cast<size_t>(S) + 1 ||
      m.state_slots.size() != static_cast<size_t>(S) ||
      m.block_tables.size() != static_cast<size_t>(S) * static_cast<size_t>(m.blocks_per_seq))
    return invalid_argument("inconsistent step metadata");
  std::vector<int32_t> token_seq(static_cast<size_t>(T));
  DeviceStep d;
  d.T = T;
  d.S = S;
  d.blocks_per_seq = m.blocks_per_seq;
  d.n_reset = static_cast<int>(m.reset_slots.size());
  d.n_logit_rows = static_cast<int>(m.logit_rows.size());
  d.all_decode = S > 0;
  for (int s = 0; s < S; ++s) {
    const int64_t n = m.cu_seqlens[static_cast<size_t>(s) + 1] - m.cu_seqlens[static_cast<size_t>(s)];
    for (int32_t t = m.cu_seqlens[static_cast<size_t>(s)]; t < m.cu_seqlens[static_cast<size_t>(s) + 1]; ++t)
      token_seq[static_cast<size_t>(t)] = s;
    d.max_new_tokens = std::max(d.max_new_tokens, n);
    d.max_context = std::max(d.max_context, m.start_pos[static_cast<size_t>(s)] + n);
    if (n != 1) d.all_decode = false;
  }
  if (m.context_bound > 0) {
    if (d.max_context > m.context_bound)
      return invalid_argument("a sequence's context (" + std::to_string(d.max_context) +
                              ") exceeds the step's bound (" + std::to_string(m.context_bound) + ")");
    d.max_context = m.context_bound;
  }
  // One tight host image of every array, one upload.
  size_t off = 0;
  auto* base = static_cast<unsigned char*>(meta_buf_->data());
  auto put = [&](const void* src, size_t bytes) {
    if (bytes > 0) std::memcpy(meta_host_.data() + off, src, bytes);
    void* dst = base + off;
    off += align16(bytes);
    return dst;
  };
  d.token_ids = static_cast<int32_t*>(put(m.token_ids.data(), m.token_ids.size() * 4));
  d.positions = static_cast<int64_t*>(put(m.positions.data(), m.positions.size() * 8));
  d.cu_seqlens = static_cast<int32_t*>(put(m.cu_seqlens.data(), m.cu_seqlens.size() * 4));
  d.start_pos = static_cast<int64_t*>(put(m.start_pos.data(), m.start_pos.size() * 8));
  d.state_slots = static_cast<int32_t*>(put(m.state_slots.data(), m.state_slots.size() * 4));
  d.block_tables = static_cast<int32_t*>(put(m.block_tables.data(), m.block_tables.size() * 4));
  d.reset_slots = static_cast<int32_t*>(put(m.reset_slots.data(), m.reset_slots.size() * 4));
  d.logit_rows = static_cast<int32_t*>(put(m.logit_rows.data(), m.logit_rows.size() * 4));
  d.token_seq = static_cast<int32_t*>(put(token_seq.data(), token_seq.size() * 4));
  DS_RETURN_IF_ERROR(rt_->copy_h2d(meta_buf_->data(), meta_host_.data(), off));
  step_ = d;
  return Status::ok();
}

Result<std::shared_ptr<Backend>> make_gpu_backend(int index, GpuOptions options) {
  if (options.activation_dtype != DType::kF32 && options.activation_dtype != DType::kBF16 &&
      options.activation_dtype != DType::kF16)
    return invalid_argument("GPU activations must be float32, bfloat16 or float16");
  DS_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt, Runtime::open(index));
  DS_ASSIGN_OR_RETURN(DeviceInfo info, rt->query_memory());
  if (compiled_vendor() != Vendor::kEmu)
    std::fprintf(stderr, "deltaserve: %s device %d: %s (%s, %d multiprocessors), %s free of %s\n",
               vendor_name(compiled_vendor()), index, info.name.c_str(), info.arch.c_str(), info.multiprocessors,
               gib(info.free_bytes).c_str(), gib(info.total_bytes).c_str());
  return std::shared_ptr<Backend>(std::make_shared<GpuBackend>(std::move(rt), options));
}

}  // namespace ds::backend::gpu
