#include "deltaserve/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include "deltaserve/core/log.h"

namespace ds::engine {

using Clock = std::chrono::steady_clock;

namespace {
double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
bool contains(const std::vector<int32_t>& v, int32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }
}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    default: return nullptr;
  }
}

// Everything the engine thread keeps per request.
struct Engine::Live {
  Sequence seq;
  EngineRequest req;
  std::shared_ptr<RequestStream> stream;
  Rng rng;
  IncrementalDetokenizer detok;
  StopStringTracker stops;
  RowSampler sampler;  // this step's sampling row (points into req.params and seq's tokens)
  std::vector<PositionLogprobs> prompt_lps;
  bool prompt_lps_sent = false;
  Clock::time_point arrival, first_scheduled, first_token, last_token;
  bool scheduled_once = false;

  Live(EngineRequest r, const TextCodec* codec, uint64_t seed)
      : req(std::move(r)),
        stream(std::make_shared<RequestStream>()),
        rng(seed),
        detok(codec, req.params.skip_special_tokens),
        stops(req.params.stop, req.params.include_stop_str_in_output),
        arrival(Clock::now()) {}

  bool wants_prompt_lps() const { return req.params.prompt_logprobs >= 0 && !prompt_lps_sent; }
};

Engine::Engine(model::Model* model, const TextCodec* codec, EngineConfig cfg)
    : model_(model),
      codec_(codec),
      cfg_(cfg),
      kv_(model->cache_config().num_kv_blocks, model->cache_config().block_size),
      slots_(model->cache_config().num_state_slots),
      sched_({std::min(cfg.max_num_seqs, std::max(1, model->cache_config().num_state_slots)),
              cfg.max_num_batched_tokens},
             &kv_, &slots_),
      seed_rng_(cfg.seed) {
  const int64_t max_len = cfg_.max_model_len;
  stats_.num_kv_blocks = kv_.num_blocks();
  stats_.block_size = kv_.block_size();
  stats_.num_state_slots = slots_.num_slots();
  stats_.max_num_seqs = cfg_.max_num_seqs;
  auto& h = stats_.histograms;
  h["time_to_first_token_seconds"] = Histogram(ttft_buckets());
  h["inter_token_latency_seconds"] = Histogram(inter_token_buckets());
  h["request_time_per_output_token_seconds"] = Histogram(inter_token_buckets());
  for (const char* n : {"e2e_request_latency_seconds", "request_queue_time_seconds",
                        "request_prefill_time_seconds", "request_decode_time_seconds",
                        "request_inference_time_seconds"})
    h[n] = Histogram(request_latency_buckets());
  for (const char* n : {"request_prompt_tokens", "request_generation_tokens",
                        "request_max_num_generation_tokens", "request_params_max_tokens"})
    h[n] = Histogram(buckets_1_2_5(max_len));
  h["request_params_n"] = Histogram({1, 2, 5, 10, 20});
  h["iteration_tokens_total"] = Histogram(buckets_1_2_5(std::max<int64_t>(cfg_.max_num_batched_tokens, 1)));
}

Engine::~Engine() { shutdown(); }

void Engine::start() {
  if (started_.exchange(true)) return;
  thread_ = std::thread([this] { loop(); });
}

void Engine::shutdown() {
  {
    std::lock_guard<std::mutex> lk(inbox_mu_);
    stop_ = true;
  }
  inbox_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<RequestHandle> Engine::submit(EngineRequest req) {
  if (req.prompt_token_ids.empty()) return invalid_argument("The prompt is empty.");
  const int64_t plen = static_cast<int64_t>(req.prompt_token_ids.size());
  if (plen >= cfg_.max_model_len)
    return invalid_argument("The prompt (length " + std::to_string(plen) +
                            ") is longer than the maximum model length of " + std::to_string(cfg_.max_model_len) +
                            ".");
  for (int32_t t : req.prompt_token_ids)
    if (t < 0 || t >= model_->vocab_size())
      return invalid_argument("Token id " + std::to_string(t) + " is out of vocabulary");
  std::lock_guard<std::mutex> lk(inbox_mu_);
  if (stop_ || !alive_ || !accepting_) return internal_error("The engine is not running (shutting down).");
  const uint64_t seed = req.params.seed ? *req.params.seed : seed_rng_.next();
  auto live = std::make_unique<Live>(std::move(req), codec_, seed);
  live->seq.id = next_id_++;
  live->seq.prompt = live->req.prompt_token_ids;
  RequestHandle h{live->seq.id, live->stream};
  inbox_.push_back(std::move(live));
  inbox_cv_.notify_all();
  return h;
}

void Engine::abort(int64_t seq_id) {
  std::lock_guard<std::mutex> lk(inbox_mu_);
  aborts_.push_back(seq_id);
  inbox_cv_.notify_all();
}

void Engine::stop_accepting() {
  std::lock_guard<std::mutex> lk(inbox_mu_);
  accepting_ = false;
}

void Engine::abort_all() {
  std::lock_guard<std::mutex> lk(inbox_mu_);
  abort_all_ = true;
  inbox_cv_.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lk(stats_mu_);
  EngineStats s = stats_;
  s.alive = alive_.load();
  return s;
}

void Engine::publish_gauges() {
  std::lock_guard<std::mutex> lk(stats_mu_);
  stats_.num_running = sched_.num_running();
  stats_.num_waiting = sched_.num_waiting();
  stats_.kv_usage = kv_.usage();
  stats_.num_preemptions_total = static_cast<uint64_t>(sched_.num_preemptions());
}

void Engine::loop() {
  try {
    for (;;) {
      std::vector<std::unique_ptr<Live>> incoming;
      std::vector<int64_t> aborts;
      bool abort_everything = false, stopping = false;
      {
        std::unique_lock<std::mutex> lk(inbox_mu_);
        inbox_cv_.wait(lk, [&] {
          return stop_ || abort_all_ || !inbox_.empty() || !aborts_.empty() || !sched_.idle();
        });
        incoming.swap(inbox_);
        aborts.swap(aborts_);
        abort_everything = abort_all_ || stop_;
        abort_all_ = false;
        stopping = stop_;
      }
      for (auto& l : incoming) {
        Live* p = l.get();
        live_[p->seq.id] = std::move(l);
        sched_.add(&p->seq);
        std::lock_guard<std::mutex> lk(stats_mu_);
        stats_.histograms["request_params_max_tokens"].observe(static_cast<double>(p->req.params.max_tokens));
        if (p->req.child_index == 0) stats_.histograms["request_params_n"].observe(p->req.n);
      }
      if (abort_everything) {
        std::vector<int64_t> ids;
        for (auto& [id, l] : live_) ids.push_back(id);
        aborts.insert(aborts.end(), ids.begin(), ids.end());
      }
      for (int64_t id : aborts) {
        auto it = live_.find(id);
        if (it != live_.end()) finish(it->second.get(), FinishReason::kAbort, {});
      }
      publish_gauges();
      if (stopping) break;
      if (!sched_.idle()) step();
      publish_gauges();
    }
  } catch (const std::exception& e) {
    DS_ERROR << "engine thread failed: " << e.what();
    fail_all(internal_error(std::string("EngineCore encountered an issue: ") + e.what()));
  }
  publish_gauges();
}

void Engine::fail_all(const Status& st) {
  alive_ = false;
  std::vector<int64_t> ids;
  for (auto& [id, l] : live_) ids.push_back(id);
  for (int64_t id : ids) {
    RequestEvent ev;
    ev.error = st;
    finish(live_[id].get(), FinishReason::kAbort, std::move(ev));
  }
  std::lock_guard<std::mutex> lk(inbox_mu_);
  for (auto& l : inbox_) {
    RequestEvent ev;
    ev.error = st;
    ev.finish = FinishReason::kAbort;
    l->stream->push(std::move(ev));
  }
  inbox_.clear();
}

void Engine::step() {
  const std::vector<ScheduledSeq> sched = sched_.schedule();
  if (sched.empty()) {
    // Cannot happen while admission guarantees one max_model_len sequence fits; never spin on it.
    if (sched_.num_running() == 0 && sched_.num_waiting() > 0) {
      Live* head = live_[sched_.waiting().front()->id].get();
      RequestEvent ev;
      ev.error = resource_exhausted("Not enough KV cache to schedule the request.");
      finish(head, FinishReason::kAbort, std::move(ev));
    }
    return;
  }
  model::StepPlan plan;
  int64_t step_tokens = 0;
  const auto now = Clock::now();
  for (const ScheduledSeq& s : sched) {
    Live* l = live_[s.seq->id].get();
    if (!l->scheduled_once) {
      l->scheduled_once = true;
      l->first_scheduled = now;
    }
    model::SeqStep st;
    st.seq_id = s.seq->id;
    st.start_pos = s.seq->num_computed;
    for (int64_t p = 0; p < s.num_new_tokens; ++p) st.token_ids.push_back(s.seq->token_at(st.start_pos + p));
    st.block_table = s.seq->block_table;
    st.state_slot = s.seq->slot;
    const int64_t P = static_cast<int64_t>(s.seq->prompt.size());
    if (l->wants_prompt_lps() && st.start_pos < P) {
      // Prompt logprobs: each new prompt token's row scores the prompt token after it.
      st.all_logits = true;
      st.target_top_k = l->req.params.prompt_logprobs;
      for (int64_t j = 0; j < s.num_new_tokens; ++j) {
        const int64_t target = st.start_pos + j + 1;
        st.logprob_targets.push_back(target < P ? s.seq->prompt[static_cast<size_t>(target)] : -1);
      }
    }
    if (st.start_pos + s.num_new_tokens == s.seq->total_len()) {  // caught up: sample the next token
      prepare_sampling_row(l->req.params, s.seq->prompt, s.seq->output, &l->rng, &l->sampler);
      st.sampling = l->sampler.row;
    }
    st.num_prompt_tokens = static_cast<int64_t>(s.seq->prompt.size());
    step_tokens += s.num_new_tokens;
    plan.seqs.push_back(std::move(st));
  }
  Result<model::StepOutput> out = model_->forward(plan);
  if (!out) {
    DS_ERROR << "model forward failed: " << out.status().message();
    for (const ScheduledSeq& s : sched) {
      RequestEvent ev;
      ev.error = out.status();
      finish(live_[s.seq->id].get(), FinishReason::kAbort, std::move(ev));
    }
    return;
  }
  const model::StepOutput& o = *out;
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    stats_.histograms["iteration_tokens_total"].observe(static_cast<double>(step_tokens));
  }
  sched_.commit(sched);
  for (size_t i = 0; i < sched.size(); ++i) {
    Sequence* seq = sched[i].seq;
    Live* l = live_[seq->id].get();
    const model::SeqStep& st = plan.seqs[i];
    const bool sampled = st.sampling.has_value();
    const bool has_targets = !st.logprob_targets.empty();
    if (o.sampled.size() != sched.size() || o.target_logprobs.size() != sched.size() ||
        (sampled && o.sampled[i].token < 0) ||
        (has_targets && o.target_logprobs[i].size() != st.token_ids.size())) {
      RequestEvent ev;
      ev.error = internal_error("model returned an incomplete step");
      finish(l, FinishReason::kAbort, std::move(ev));
      continue;
    }
    const int64_t P = static_cast<int64_t>(seq->prompt.size());
    if (has_targets) {
      if (l->prompt_lps.empty()) l->prompt_lps.resize(static_cast<size_t>(P));
      for (size_t j = 0; j < st.token_ids.size(); ++j)
        if (st.logprob_targets[j] >= 0)
          l->prompt_lps[static_cast<size_t>(st.start_pos) + j + 1] = o.target_logprobs[i][j];
    }
    if (sampled) process_token(l, o.sampled[i]);
  }
  if (cfg_.check_invariants) {
    Status st = sched_.check_invariants();
    if (!st) throw std::runtime_error(st.message());
  }
}

void Engine::process_token(Live* l, const backend::SampleResult& sampled) {
  Sequence& seq = l->seq;
  const SamplingParams& p = l->req.params;
  const int32_t tok = sampled.token;
  const auto now = Clock::now();

  RequestEvent ev;
  ev.token_ids.push_back(tok);
  if (p.logprobs >= 0 && sampled.logprobs) ev.logprobs.push_back(*sampled.logprobs);
  if (l->wants_prompt_lps()) {
    l->prompt_lps_sent = true;
    ev.prompt_logprobs = std::move(l->prompt_lps);
  }
  seq.output.push_back(tok);
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    if (seq.output.size() == 1) {
      stats_.prompt_tokens_total += seq.prompt.size();
      stats_.histograms["time_to_first_token_seconds"].observe(secs(l->arrival, now));
      l->first_token = now;
    } else {
      const double itl = secs(l->last_token, now);
      stats_.histograms["inter_token_latency_seconds"].observe(itl);
    }
    stats_.generation_tokens_total++;
  }
  l->last_token = now;

  const int64_t out_len = static_cast<int64_t>(seq.output.size());
  FinishReason fin = FinishReason::kNone;
  const bool past_min = out_len >= p.min_tokens;
  const bool is_eos = !p.ignore_eos && contains(p.eos_token_ids, tok);
  const bool is_stop_tok = contains(p.stop_token_ids, tok);
  if (past_min && is_eos) {
    fin = FinishReason::kStop;
  } else if (past_min && is_stop_tok) {
    fin = FinishReason::kStop;
    ev.stop_reason = tok;
  }
  if (fin == FinishReason::kNone || p.include_stop_str_in_output) {
    const std::string delta = l->detok.add(tok);
    const int hit = l->stops.add(delta, /*match=*/past_min);
    if (hit >= 0 && fin == FinishReason::kNone) {
      fin = FinishReason::kStop;
      ev.stop_reason = p.stop[static_cast<size_t>(hit)];
    }
  }
  if (fin == FinishReason::kNone &&
      (out_len >= p.max_tokens || seq.total_len() >= cfg_.max_model_len))
    fin = FinishReason::kLength;
  ev.num_prompt_tokens = static_cast<int64_t>(seq.prompt.size());
  ev.num_output_tokens = out_len;
  if (fin == FinishReason::kNone) {
    ev.text = l->stops.take(false);
    l->stream->push(std::move(ev));
  } else {
    finish(l, fin, std::move(ev));
  }
}

void Engine::finish(Live* l, FinishReason reason, RequestEvent ev) {
  const auto now = Clock::now();
  ev.finish = reason;
  ev.text += l->stops.take(true);
  ev.num_prompt_tokens = static_cast<int64_t>(l->seq.prompt.size());
  ev.num_output_tokens = static_cast<int64_t>(l->seq.output.size());
  sched_.remove(&l->seq);
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    stats_.request_success[finish_reason_name(reason)]++;
    auto& h = stats_.histograms;
    const double n_out = static_cast<double>(l->seq.output.size());
    h["e2e_request_latency_seconds"].observe(secs(l->arrival, now));
    if (l->scheduled_once) {
      h["request_queue_time_seconds"].observe(secs(l->arrival, l->first_scheduled));
      h["request_inference_time_seconds"].observe(secs(l->first_scheduled, now));
    }
    if (n_out > 0) {
      h["request_prefill_time_seconds"].observe(secs(l->first_scheduled, l->first_token));
      h["request_decode_time_seconds"].observe(secs(l->first_token, now));
      if (n_out > 1)
        h["request_time_per_output_token_seconds"].observe(secs(l->first_token, l->last_token) / (n_out - 1));
    }
    h["request_prompt_tokens"].observe(static_cast<double>(l->seq.prompt.size()));
    h["request_generation_tokens"].observe(n_out);
    h["request_max_num_generation_tokens"].observe(n_out);
  }
  publish_gauges();  // a client that saw the finish sees the freed cache in /metrics
  l->stream->push(std::move(ev));
  live_.erase(l->seq.id);  // l is dangling from here
}

void RequestStream::push(RequestEvent ev) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (ev.finish != FinishReason::kNone || !ev.error.is_ok()) finished_ = true;
    q_.push_back(std::move(ev));
  }
  cv_.notify_all();
}

bool RequestStream::finished() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finished_;
}

std::optional<RequestEvent> RequestStream::pop_all(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return !q_.empty(); })) return std::nullopt;
  RequestEvent out = std::move(q_.front());
  q_.pop_front();
  while (!q_.empty()) {
    RequestEvent& e = q_.front();
    out.token_ids.insert(out.token_ids.end(), e.token_ids.begin(), e.token_ids.end());
    out.text += e.text;
    for (auto& lp : e.logprobs) out.logprobs.push_back(std::move(lp));
    if (e.prompt_logprobs) out.prompt_logprobs = std::move(e.prompt_logprobs);
    out.finish = e.finish;
    out.stop_reason = e.stop_reason;
    if (!e.error.is_ok()) out.error = e.error;
    out.num_prompt_tokens = e.num_prompt_tokens;
    out.num_output_tokens = e.num_output_tokens;
    q_.pop_front();
  }
  return out;
}

}  // namespace ds::engine
