// GpuBackend's small ops: embedding, norms, M-RoPE, the q/gate split, elementwise glue, logit-row
// gather and GDN gates. Each is one launch of a kernel from kernels/gpu/{norm,rope,elementwise}.cu
// over the Act views as given (strided views included), reading the planned step metadata.
#include <string>

#include "kernels/gpu/ops_norm.h"
#include "src/backend/gpu/gpu_backend.h"
#include "src/backend/gpu/gpu_ops_util.h"

namespace ds::backend::gpu {
namespace {


}  // namespace

void GpuBackend::embed(const EmbeddingTable& table, Act out) {
  ds::gpu::gather_rows(table.data, table.dtype, table.rows, table.dim, table.dim, step_.token_ids, step_.T, out.data,
                       out.dtype, out.ld, rt_->stream(), table.first_row);
  check("embed", [&] { return std::string("T=" + std::to_string(step_.T) + " table=" + std::to_string(table.rows) + "x" +
                     std::to_string(table.dim) + " " + dtype_name(table.dtype) + " out=" + dims(out)); });
}

void GpuBackend::rms_norm(Act x, const float* w, float eps, bool zero_centred, Act out) {
  const auto kind = zero_centred ? ds::gpu::NormKind::kRmsZeroCentred : ds::gpu::NormKind::kRms;
  ds::gpu::norm_rows(kind, x.data, x.ld, nullptr, 0, w, x.rows, 1, x.cols, eps, 1.0f, out.data, out.ld, x.dtype,
                     rt_->stream());
  check("rms_norm", [&] { return std::string("x=" + dims(x) + " out=" + dims(out) + (zero_centred ? " zero-centred" : "")); });
}

void GpuBackend::gated_rms_norm(Act x, Act z, const float* w, float eps, Act out) {
  ds::gpu::norm_rows(ds::gpu::NormKind::kGatedRms, x.data, x.ld, z.data, z.ld, w, x.rows, 1, x.cols, eps, 1.0f,
                     out.data, out.ld, x.dtype, rt_->stream());
  check("gated_rms_norm", [&] { return std::string("x=" + dims(x) + " z=" + dims(z) + " out=" + dims(out)); });
}

void GpuBackend::l2_norm_heads(Act x, int head_dim, float eps, float scale) {
  ds::gpu::norm_rows(ds::gpu::NormKind::kL2, x.data, x.ld, nullptr, 0, nullptr, x.rows,
                     static_cast<int>(x.cols / head_dim), head_dim, eps, scale, x.data, x.ld, x.dtype, rt_->stream());
  check("l2_norm_heads", [&] { return std::string("x=" + dims(x) + " head_dim=" + std::to_string(head_dim)); });
}

void GpuBackend::rope_mrope(Act x, int heads, int head_dim, int rot_dim, double theta, const int32_t* mrope_section) {
  auto shapes = [&] {
    return "x=" + dims(x) + " heads=" + std::to_string(heads) + " head_dim=" + std::to_string(head_dim) +
           " rot_dim=" + std::to_string(rot_dim);
  };
  if (rot_dim / 2 > ds::gpu::kMaxRopeHalf || rot_dim > head_dim) {
    // A model the loader accepted but this kernel cannot run: no error channel in ops (contract).
    op_fail("rope_mrope", shapes() + ": needs rot_dim <= head_dim and <= " + std::to_string(2 * ds::gpu::kMaxRopeHalf));
  }
  ds::gpu::rope_mrope(x.data, x.ld, x.rows, heads, head_dim, rot_dim, theta, mrope_section, step_.positions, x.dtype,
                      rt_->stream());
  check("rope_mrope", shapes);
}

void GpuBackend::split_query_gate(Act qg, int heads, int head_dim, Act q, Act gate) {
  ds::gpu::split_query_gate(qg.data, qg.ld, qg.rows, heads, head_dim, q.data, q.ld, gate.data, gate.ld, qg.dtype,
                            rt_->stream());
  check("split_query_gate", [&] { return std::string("qg=" + dims(qg) + " heads=" + std::to_string(heads) + " head_dim=" +
                                std::to_string(head_dim) + " q=" + dims(q) + " gate=" + dims(gate)); });
}

void GpuBackend::silu_mul(Act gate, Act up, Act out) {
  ds::gpu::binary_rows(ds::gpu::BinaryOp::kSiluMul, gate.data, gate.ld, up.data, up.ld, out.data, out.ld, gate.rows,
                       gate.cols, gate.dtype, nullptr, 0, DType::kF32, rt_->stream());
  check("silu_mul", [&] { return std::string("gate=" + dims(gate) + " up=" + dims(up) + " out=" + dims(out)); });
}

void GpuBackend::sigmoid_gate(Act x, Act gate) {
  ds::gpu::binary_rows(ds::gpu::BinaryOp::kSigmoidGate, x.data, x.ld, gate.data, gate.ld, x.data, x.ld, x.rows, x.cols,
                       x.dtype, nullptr, 0, DType::kF32, rt_->stream());
  check("sigmoid_gate", [&] { return std::string("x=" + dims(x) + " gate=" + dims(gate)); });
}

void GpuBackend::add(Act x, Act y) {
  ds::gpu::binary_rows(ds::gpu::BinaryOp::kAdd, x.data, x.ld, y.data, y.ld, x.data, x.ld, x.rows, x.cols, x.dtype,
                       nullptr, 0, DType::kF32, rt_->stream());
  check("add", [&] { return std::string("x=" + dims(x) + " y=" + dims(y)); });
}

void GpuBackend::add_sigmoid_gated(Act x, Act y, Act gate_logit) {
  ds::gpu::binary_rows(ds::gpu::BinaryOp::kAddGated, x.data, x.ld, y.data, y.ld, x.data, x.ld, x.rows, x.cols,
                       x.dtype, gate_logit.data, gate_logit.ld, gate_logit.dtype, rt_->stream());
  check("add_sigmoid_gated", [&] { return std::string("x=" + dims(x) + " y=" + dims(y) + " gate_logit=" + dims(gate_logit)); });
}

void GpuBackend::gather_logit_rows(Act h, int64_t first, Act out) {
  ds::gpu::gather_rows(h.data, h.dtype, h.rows, h.ld, h.cols, step_.logit_rows + first, out.rows, out.data, out.dtype,
                       out.ld, rt_->stream());
  check("gather_logit_rows", [&] { return std::string("h=" + dims(h) + " first=" + std::to_string(first) + " out=" + dims(out)); });
}

void GpuBackend::gdn_gates(Act a, Act b, const float* A_log, const float* dt_bias, Act g, Act beta) {
  ds::gpu::gdn_gates(a.data, a.ld, a.dtype, b.data, b.ld, b.dtype, a.rows, static_cast<int>(a.cols), A_log, dt_bias,
                     g.as<float>(), g.ld, beta.as<float>(), beta.ld, rt_->stream());
  check("gdn_gates", [&] { return std::string("a=" + dims(a) + " b=" + dims(b) + " g=" + dims(g) + " beta=" + dims(beta)); });
}

}  // namespace ds::backend::gpu
