#include <sstream>

#include "src/model/loader_internal.h"

namespace ds::model::detail {

namespace {

bool is_float(DType t) { return t == DType::kBF16 || t == DType::kF16 || t == DType::kF32; }

TensorView estimate(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
  TensorView v;
  v.name = name;
  v.dtype = dtype;
  v.shape = shape;
  v.nbytes = static_cast<size_t>(v.numel()) * dtype_size(dtype);
  return v;  // data stays nullptr: an estimate
}

const TensorView* lookup(LoadContext& ctx, const std::string& name) {
  const TensorView* t = ctx.storage ? ctx.storage->find(name) : nullptr;
  if (t) ctx.used.insert(name);
  return t;
}

Status expect(const TensorView& t, const std::vector<int64_t>& shape, std::initializer_list<DType> dtypes,
              const std::string& module, const std::string& why) {
  bool dtype_ok = false;
  for (DType d : dtypes) dtype_ok = dtype_ok || t.dtype == d;
  if (!dtype_ok) {
    std::string want;
    for (DType d : dtypes) {
      if (!want.empty()) want += '/';
      want += dtype_name(d);
    }
    return corrupt(module + ": tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) + ", expected " + want);
  }
  if (t.shape != shape)
    return corrupt(module + ": tensor '" + t.name + "' has shape " + shape_str(t.shape) + ", expected " +
                   shape_str(shape) + " " + why);
  return {};
}

// The scheme's arithmetic must work for this module's K and N before any tensor is looked at.
Status check_divisible(const std::string& name, int64_t n, int64_t k, const QuantScheme& s, const std::string& src) {
  if (!s.quantized()) return {};
  const int pf = 32 / s.bits;
  if (s.group_size > 0 && k % s.group_size != 0)
    return invalid_argument(name + ": group_size " + std::to_string(s.group_size) + " (" + src +
                            ") does not divide in_features K=" + std::to_string(k));
  if (k % pf != 0)
    return invalid_argument(name + ": in_features K=" + std::to_string(k) + " is not a multiple of " +
                            std::to_string(pf) + " (int" + std::to_string(s.bits) + " packing)");
  if (n % pf != 0)
    return invalid_argument(name + ": out_features N=" + std::to_string(n) + " is not a multiple of " +
                            std::to_string(pf) + " (int" + std::to_string(s.bits) + " qzeros packing)");
  return {};
}

}  // namespace

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

PackedShapes packed_shapes(int64_t n, int64_t k, const QuantScheme& s) {
  const int pf = 32 / s.bits;
  const int64_t groups = s.group_size > 0 ? k / s.group_size : 1;
  return {{k / pf, n}, {groups, n / pf}, {groups, n}, {k}};
}

Result<TensorView> bind_tensor(LoadContext& ctx, const std::string& name, const std::vector<int64_t>& shape,
                               bool required, DType estimate_dtype) {
  if (ctx.config_only()) {
    if (!required) return TensorView{};
    return estimate(name, estimate_dtype == DType::kUnknown ? ctx.model_dtype : estimate_dtype, shape);
  }
  const TensorView* t = lookup(ctx, name);
  if (!t) {
    if (required) return not_found("missing tensor '" + name + "'");
    return TensorView{};
  }
  if (!is_float(t->dtype))
    return corrupt("tensor '" + name + "' has dtype " + dtype_name(t->dtype) + ", expected BF16/F16/F32");
  if (t->shape != shape)
    return corrupt("tensor '" + name + "' has shape " + shape_str(t->shape) + ", expected " + shape_str(shape));
  return *t;
}

Result<LinearWeight> bind_linear(LoadContext& ctx, const std::string& name, int64_t n, int64_t k, bool core,
                                 bool is_lm_head) {
  LinearWeight w;
  w.name = name;
  w.in_features = k;
  w.out_features = n;
  DS_ASSIGN_OR_RETURN(SchemeDecision d, ctx.rules->decide({name, core, is_lm_head}));
  QuantScheme s = d.scheme;

  if (ctx.config_only()) {
    // Modules quantizers usually skip are assumed unquantized unless a rule names them.
    if (d.binding == SchemeBinding::kFollowTensors) s.bits = 16;
    if (!s.quantized()) s = QuantScheme{16, -1, true, false, false, "none"};
    DS_RETURN_IF_ERROR(check_divisible(name, n, k, s, d.source));
    w.scheme = s;
    if (!s.quantized()) {
      w.weight = estimate(name + ".weight", ctx.model_dtype, {n, k});
      return w;
    }
    const PackedShapes p = packed_shapes(n, k, s);
    w.qweight = estimate(name + ".qweight", DType::kI32, p.qweight);
    w.qzeros = estimate(name + ".qzeros", DType::kI32, p.qzeros);
    w.scales = estimate(name + ".scales", DType::kF16, p.scales);
    if (s.method == "gptq") w.g_idx = estimate(name + ".g_idx", DType::kI32, p.g_idx);  // AutoRound has none
    return w;
  }

  const TensorView* weight = lookup(ctx, name + ".weight");
  const TensorView* qweight = lookup(ctx, name + ".qweight");
  if (weight && qweight)
    return corrupt(name + ": both '" + name + ".weight' and '" + name + ".qweight' are present");
  if (!weight && !qweight) {
    const bool want_q = s.quantized() && d.binding == SchemeBinding::kRequired;
    return not_found("missing tensor '" + name + (want_q ? ".qweight" : ".weight") + "'");
  }
  if (const TensorView* b = lookup(ctx, name + ".bias")) {
    if (b->shape != std::vector<int64_t>{n})
      return corrupt(name + ": tensor '" + b->name + "' has shape " + shape_str(b->shape) + ", expected [" +
                     std::to_string(n) + "]");
    w.bias = *b;
  }

  if (weight) {
    if (s.quantized() && d.binding == SchemeBinding::kRequired)
      return corrupt(name + ": " + d.source + " says " + describe_scheme(s) + " but the checkpoint has only '" +
                     name + ".weight' (unquantized)");
    w.scheme = QuantScheme{16, -1, true, false, false, "none"};
    DS_RETURN_IF_ERROR(expect(*weight, {n, k}, {DType::kBF16, DType::kF16, DType::kF32}, name, "[out, in]"));
    w.weight = *weight;
    return w;
  }

  // Stored quantized.
  if (!s.quantized()) {
    if (!ctx.rules->quantized())
      return corrupt(name + ": stored quantized ('" + name + ".qweight') but the checkpoint has no quantization_config");
    if (d.binding == SchemeBinding::kRequired)
      return corrupt(name + ": stored quantized ('" + name + ".qweight') but " + d.source + " says unquantized");
    s = ctx.rules->global();
  }
  if (qweight->dtype != DType::kI32)
    return corrupt(name + ": tensor '" + qweight->name + "' has dtype " + dtype_name(qweight->dtype) + ", expected I32");
  // The stored shapes determine bits and group size; name the disagreement with the rule precisely.
  // qweight rows = K * bits / 32
  if (qweight->shape.size() == 2 && qweight->shape[1] == n && qweight->shape[0] > 0 && (qweight->shape[0] * 32) % k == 0) {
    const int64_t stored_bits = qweight->shape[0] * 32 / k;
    if (stored_bits != s.bits)
      return corrupt(name + ": qweight shape " + shape_str(qweight->shape) + " holds " + std::to_string(stored_bits) +
                     "-bit values for K=" + std::to_string(k) + " but " + d.source + " says " + describe_scheme(s));
  }
  DS_RETURN_IF_ERROR(check_divisible(name, n, k, s, d.source));
  const PackedShapes p = packed_shapes(n, k, s);
  DS_RETURN_IF_ERROR(expect(*qweight, p.qweight, {DType::kI32}, name, "for [K*bits/32, N]"));
  w.qweight = *qweight;

  const TensorView* scales = lookup(ctx, name + ".scales");
  if (!scales) return not_found("missing tensor '" + name + ".scales'");
  if (scales->shape.size() == 2 && scales->shape[1] == n && scales->shape != p.scales && scales->shape[0] > 0 &&
      k % scales->shape[0] == 0)
    return corrupt(name + ": scales shape " + shape_str(scales->shape) + " means group_size " +
                   std::to_string(k / scales->shape[0]) + " but " + d.source +
                   " says " + describe_scheme(s));
  DS_RETURN_IF_ERROR(expect(*scales, p.scales, {DType::kF16, DType::kBF16, DType::kF32}, name, "for [groups, N]"));
  w.scales = *scales;

  if (const TensorView* qz = lookup(ctx, name + ".qzeros")) {
    DS_RETURN_IF_ERROR(expect(*qz, p.qzeros, {DType::kI32}, name, "for [groups, N*bits/32]"));
    w.qzeros = *qz;
  } else if (!s.sym) {
    return not_found("missing tensor '" + name + ".qzeros' (asymmetric quantization needs zero points)");
  }

  if (const TensorView* gi = lookup(ctx, name + ".g_idx")) {
    DS_RETURN_IF_ERROR(expect(*gi, p.g_idx, {DType::kI32}, name, "for [K]"));
    w.g_idx = *gi;
    if (s.desc_act) {  // act-order indices are used as gather offsets: they must stay in range
      const int64_t groups = p.scales[0];
      const auto* idx = static_cast<const int32_t*>(gi->data);
      for (int64_t i = 0; i < k; ++i)
        if (idx[i] < 0 || idx[i] >= groups)
          return corrupt(name + ": g_idx[" + std::to_string(i) + "] = " + std::to_string(idx[i]) +
                         " is outside [0, " + std::to_string(groups) + ")");
    }
  } else if (s.desc_act) {
    return not_found("missing tensor '" + name + ".g_idx' (desc_act needs it)");
  }
  w.scheme = s;
  return w;
}

Status bind_experts(LoadContext& ctx, const std::string& mlp, bool core, MoeWeights* moe) {
  const ModelConfig& c = *ctx.cfg;
  const int64_t e_count = c.num_experts, inter = c.moe_intermediate_size, h = c.hidden_size;
  const std::string gu_name = mlp + "experts.gate_up_proj", down_name = mlp + "experts.down_proj";
  const TensorView* gu = ctx.storage ? ctx.storage->find(gu_name) : nullptr;
  const TensorView* down = ctx.storage ? ctx.storage->find(down_name) : nullptr;
  moe->experts.assign(static_cast<size_t>(e_count), MlpWeights{});
  if (!gu && !down) {
    for (int64_t e = 0; e < e_count; ++e) {
      const std::string p = mlp + "experts." + std::to_string(e) + ".";
      MlpWeights& x = moe->experts[static_cast<size_t>(e)];
      DS_ASSIGN_OR_RETURN(x.gate_proj, bind_linear(ctx, p + "gate_proj", inter, h, core));
      DS_ASSIGN_OR_RETURN(x.up_proj, bind_linear(ctx, p + "up_proj", inter, h, core));
      DS_ASSIGN_OR_RETURN(x.down_proj, bind_linear(ctx, p + "down_proj", h, inter, core));
    }
    return {};
  }
  // Fused 3-D bf16 experts (official checkpoints): gate_up [E, 2I, H] (gate rows first), down [E, H, I].
  if (!gu) return not_found("missing tensor '" + gu_name + "' (found '" + down_name + "')");
  if (!down) return not_found("missing tensor '" + down_name + "' (found '" + gu_name + "')");
  if (ctx.storage->find(mlp + "experts.0.gate_proj.weight") || ctx.storage->find(mlp + "experts.0.gate_proj.qweight"))
    return corrupt(mlp + "experts: both fused '" + gu_name + "' and per-expert tensors are present");
  ctx.used.insert(gu_name);
  ctx.used.insert(down_name);
  DS_RETURN_IF_ERROR(expect(*gu, {e_count, 2 * inter, h}, {DType::kBF16, DType::kF16, DType::kF32}, mlp + "experts",
                            "[experts, 2*moe_intermediate_size, hidden_size]"));
  DS_RETURN_IF_ERROR(expect(*down, {e_count, h, inter}, {DType::kBF16, DType::kF16, DType::kF32}, mlp + "experts",
                            "[experts, hidden_size, moe_intermediate_size]"));
  moe->experts_fused = true;
  const size_t es = dtype_size(gu->dtype);
  auto slice = [&](const TensorView& t, int64_t rows, int64_t cols, size_t offset_elems) {
    TensorView v;
    v.name = t.name;
    v.dtype = t.dtype;
    v.shape = {rows, cols};
    v.data = static_cast<const uint8_t*>(t.data) + offset_elems * es;
    v.nbytes = static_cast<size_t>(rows * cols) * es;
    return v;
  };
  for (int64_t e = 0; e < e_count; ++e) {
    const std::string p = mlp + "experts." + std::to_string(e) + ".";
    MlpWeights& x = moe->experts[static_cast<size_t>(e)];
    const char* parts[] = {"gate_proj", "up_proj", "down_proj"};
    LinearWeight* dst[] = {&x.gate_proj, &x.up_proj, &x.down_proj};
    for (int i = 0; i < 3; ++i) {
      DS_ASSIGN_OR_RETURN(SchemeDecision d, ctx.rules->decide({p + parts[i], core, false}));
      if (d.scheme.quantized() && d.binding == SchemeBinding::kRequired)
        return corrupt(p + parts[i] + ": " + d.source + " says " + describe_scheme(d.scheme) +
                       " but the experts are stored as the fused unquantized tensor '" + (i < 2 ? gu_name : down_name) + "'");
      LinearWeight& w = *dst[i];
      w.name = p + parts[i];
      w.scheme = QuantScheme{16, -1, true, false, false, "none"};
      const size_t base_gu = static_cast<size_t>(e * 2 * inter * h);
      if (i == 0) w.weight = slice(*gu, inter, h, base_gu);
      if (i == 1) w.weight = slice(*gu, inter, h, base_gu + static_cast<size_t>(inter * h));
      if (i == 2) w.weight = slice(*down, h, inter, static_cast<size_t>(e * h * inter));
      w.out_features = w.weight.shape[0];
      w.in_features = w.weight.shape[1];
    }
  }
  return {};
}

}  // namespace ds::model::detail
