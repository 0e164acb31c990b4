// Tensor-parallel step driving and the step plan's wire format (include/deltaserve/model/tp_steps.h).
#include "deltaserve/model/tp_steps.h"

#include <cstring>

#include "deltaserve/core/log.h"
#include "deltaserve/core/status.h"

namespace ds::model {

namespace {

// Each step: a header {kind, payload bytes} broadcast from rank 0, then the payload.
enum : uint64_t { kStep = 1, kStop = 2 };
struct Header {
  uint64_t kind = 0, bytes = 0;
};

struct Writer {
  std::vector<uint8_t>* out;
  void bytes(const void* p, size_t n) {
    const size_t at = out->size();
    out->resize(at + n);
    if (n > 0) std::memcpy(out->data() + at, p, n);
  }
  template <typename T>
  void pod(T v) {
    bytes(&v, sizeof(T));
  }
  template <typename T>
  void vec(const std::vector<T>& v) {
    pod<uint64_t>(v.size());
    bytes(v.data(), v.size() * sizeof(T));
  }
};

struct Reader {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;
  template <typename T>
  T pod() {
    T v{};
    if (static_cast<size_t>(end - p) < sizeof(T)) {
      ok = false;
      return v;
    }
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  template <typename T>
  std::vector<T> vec() {
    const uint64_t n = pod<uint64_t>();
    if (!ok || n > static_cast<uint64_t>(end - p) / sizeof(T)) {
      ok = false;
      return {};
    }
    std::vector<T> v(n);
    std::memcpy(v.data(), p, n * sizeof(T));
    p += n * sizeof(T);
    return v;
  }
};

}  // namespace

std::vector<uint8_t> encode_step_plan(const StepPlan& plan) {
  std::vector<uint8_t> out;
  Writer w{&out};
  w.pod<uint64_t>(plan.seqs.size());
  for (const SeqStep& s : plan.seqs) {
    w.pod(s.seq_id);
    w.vec(s.token_ids);
    w.pod(s.start_pos);
    w.vec(s.block_table);
    w.pod(s.state_slot);
    const uint8_t flags = (s.all_logits ? 1 : 0) | (s.return_logits ? 2 : 0) | (s.sampling ? 4 : 0);
    w.pod(flags);
    w.vec(s.logprob_targets);
    w.pod<int32_t>(s.target_top_k);
    w.vec(s.mrope_positions);
    w.pod(s.num_prompt_tokens);
  }
  return out;
}

Result<StepPlan> decode_step_plan(const uint8_t* data, size_t size) {
  Reader r{data, data + size};
  StepPlan plan;
  const uint64_t n = r.pod<uint64_t>();
  if (n > size) return corrupt("step plan: bad sequence count");
  plan.seqs.resize(n);
  for (SeqStep& s : plan.seqs) {
    s.seq_id = r.pod<int64_t>();
    s.token_ids = r.vec<int32_t>();
    s.start_pos = r.pod<int64_t>();
    s.block_table = r.vec<int32_t>();
    s.state_slot = r.pod<int32_t>();
    const auto flags = r.pod<uint8_t>();
    s.all_logits = flags & 1;
    s.return_logits = flags & 2;
    if (flags & 4) s.sampling = backend::SamplingRow{};
    s.logprob_targets = r.vec<int32_t>();
    s.target_top_k = r.pod<int32_t>();
    s.mrope_positions = r.vec<int64_t>();
    s.num_prompt_tokens = r.pod<int64_t>();
  }
  if (!r.ok || r.p != r.end) return corrupt("step plan: truncated or trailing bytes");
  return plan;
}

static int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

TpLeaderModel::TpLeaderModel(Model* model, std::shared_ptr<dist::Communicator> comm,
                             std::chrono::milliseconds step_deadline)
    : model_(model), comm_(std::move(comm)), deadline_(step_deadline) {
  if (deadline_.count() > 0) watchdog_ = std::thread([this] { watch(); });
}

TpLeaderModel::TpLeaderModel(std::unique_ptr<Model> model, std::shared_ptr<dist::Communicator> comm,
                             std::chrono::milliseconds step_deadline)
    : TpLeaderModel(model.get(), std::move(comm), step_deadline) {
  owned_ = std::move(model);
}

TpLeaderModel::~TpLeaderModel() {
  if (!stopped_ && !failed_) (void)stop();
  {
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

void TpLeaderModel::watch() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!cv_.wait_for(lk, std::chrono::milliseconds(100), [&] { return quit_; })) {
    const int64_t began = step_began_ms_.load();
    if (began == 0 || now_ms() - began < deadline_.count()) continue;
    failed_ = true;
    const std::string why = "tensor-parallel step " + std::to_string(steps_.load()) + " has not finished after " +
                            std::to_string(deadline_.count() / 1000.0) + " s (VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS): " +
                            "one of ranks 1.." + std::to_string(comm_->size() - 1) +
                            " is hung or gone; aborting the ranks";
    DS_ERROR << why;
    cv_.wait_for(lk, std::chrono::seconds(1), [&] { return quit_; });  // /health answers 503 meanwhile
    comm_->abort(why);
    return;
  }
}

Result<StepOutput> TpLeaderModel::forward(const StepPlan& plan) {
  if (stopped_ || failed_) return internal_error("the tensor-parallel ranks are stopped");
  ++steps_;
  step_began_ms_ = now_ms();
  struct Done {
    std::atomic<int64_t>* began;
    ~Done() { *began = 0; }
  } done{&step_began_ms_};
  bytes_ = encode_step_plan(plan);
  Header h{kStep, bytes_.size()};
  Status s = comm_->broadcast_host(&h, sizeof h, 0);
  if (s.is_ok()) s = comm_->broadcast_host(bytes_.data(), bytes_.size(), 0);
  if (!s.is_ok()) {
    failed_ = true;  // a collective failed: a rank is gone
    return s;
  }
  const int64_t t0 = now_ms();
  auto out = model_->forward(plan);
  maybe_report(static_cast<double>(now_ms() - t0) * 1e-3);
  return out;
}

void TpLeaderModel::maybe_report(double step_seconds) {
  if (!timed_) return;
  const int64_t now = now_ms();
  if (window_.began_ms == 0) {
    window_.began_ms = now;
    window_.coll_s = timed_->seconds();
    window_.coll_calls = timed_->calls();
  }
  ++window_.steps;
  window_.step_s += step_seconds;
  if (now - window_.began_ms < 10000) return;
  const double coll = timed_->seconds() - window_.coll_s;
  const int64_t calls = timed_->calls() - window_.coll_calls;
  DS_INFO << "tensor parallel (" << comm_->size() << " ranks, " << timed_->name() << "): " << window_.steps
          << " steps in " << window_.step_s << " s, collectives " << calls << " calls " << coll << " s = "
          << (window_.step_s > 0 ? 100.0 * coll / window_.step_s : 0.0) << "% of step time";
  window_ = Window{};
}

Status TpLeaderModel::stop() {
  stopped_ = true;
  Header h{kStop, 0};
  return comm_->broadcast_host(&h, sizeof h, 0);
}

Status follow_tp_steps(Model& model, dist::Communicator& comm) {
  std::vector<uint8_t> bytes;
  for (;;) {
    Header h;
    DS_RETURN_IF_ERROR(comm.broadcast_host(&h, sizeof h, 0));
    if (h.kind == kStop) return Status::ok();
    if (h.kind != kStep || h.bytes > (uint64_t{1} << 32))
      return corrupt("rank " + std::to_string(comm.rank()) + ": bad step header from rank 0");
    bytes.resize(h.bytes);
    DS_RETURN_IF_ERROR(comm.broadcast_host(bytes.data(), bytes.size(), 0));
    auto plan = decode_step_plan(bytes.data(), bytes.size());
    if (!plan) return plan.status();
    auto out = model.forward(*plan);
    if (!out) {
      DS_WARN << "rank " << comm.rank() << ": step failed: " << out.status().message();
    }
  }
}

}  // namespace ds::model
