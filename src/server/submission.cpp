#include "submission.h"

#include <cmath>
#include <thread>

#include "deltaserve/core/log.h"
#include "deltaserve/server/errors.h"
#include "sse.h"

namespace ds::server {

using nlohmann::json;
using namespace std::chrono_literals;

void ChoiceState::absorb(engine::RequestEvent& ev) {
  ids.insert(ids.end(), ev.token_ids.begin(), ev.token_ids.end());
  text += ev.text;
  for (auto& l : ev.logprobs) logprobs.push_back(std::move(l));
  if (ev.prompt_logprobs) prompt_logprobs = std::move(ev.prompt_logprobs);
  if (!ev.error.is_ok()) error = ev.error;
  if (ev.finish != engine::FinishReason::kNone) {
    finish = ev.finish;
    stop_reason = ev.stop_reason;
  }
}

Submission::Submission(App* app) : app_(app) { app_->server_load++; }

Submission::~Submission() {
  abort_all();
  app_->server_load--;
}

void Submission::abort_all() {
  for (auto& c : choices)
    if (!c.done() && !c.handle.stream->finished()) app_->engine->abort(c.handle.seq_id);
}

bool Submission::all_done() const {
  for (const auto& c : choices)
    if (!c.done()) return false;
  return true;
}

int64_t Submission::completion_tokens() const {
  int64_t n = 0;
  for (const auto& c : choices) n += static_cast<int64_t>(c.ids.size());
  return n;
}

std::optional<ApiError> Submission::add_prompt(GenRequest& req, std::vector<int32_t> ids, std::string text) {
  if (req.truncate_prompt_tokens && static_cast<int64_t>(ids.size()) > *req.truncate_prompt_tokens)
    ids.erase(ids.begin(), ids.end() - *req.truncate_prompt_tokens);  // vLLM keeps the last k tokens
  engine::SamplingParams params;
  if (auto e = finalize_for_prompt(&req, static_cast<int64_t>(ids.size()), app_->cfg, &params)) return e;
  prompt_tokens += static_cast<int64_t>(ids.size());
  for (int i = 0; i < req.n; ++i) {
    engine::EngineRequest er;
    er.prompt_token_ids = ids;
    er.params = params;
    if (params.seed && i > 0) er.params.seed = *params.seed + static_cast<uint64_t>(i);  // vLLM: seed + index
    er.n = req.n;
    er.child_index = i;
    auto h = app_->engine->submit(std::move(er));
    if (!h) {
      if (h.status().code() == ErrorCode::kInvalidArgument) return bad_request(h.status().message());
      return ApiError{503, h.status().message(), "", std::nullopt};
    }
    ChoiceState c;
    c.index = static_cast<int>(choices.size());
    c.handle = *h;
    c.prompt_ids = ids;
    c.prompt_text = text;
    choices.push_back(std::move(c));
  }
  return std::nullopt;
}

bool Submission::wait_all(const std::function<bool()>& client_gone) {
  for (auto& c : choices) {
    while (!c.done()) {
      if (client_gone()) {
        abort_all();
        return false;
      }
      auto ev = c.handle.stream->pop_all(50ms);
      if (ev) c.absorb(*ev);
    }
  }
  return true;
}

json stop_reason_json(const std::variant<std::monostate, std::string, int32_t>& r) {
  if (auto* s = std::get_if<std::string>(&r)) return *s;
  if (auto* i = std::get_if<int32_t>(&r)) return *i;
  return nullptr;
}

json finish_reason_json(const ChoiceState& c) {
  const char* n = engine::finish_reason_name(c.finish);
  return n ? json(n) : json(nullptr);
}

std::string token_text(const App& app, int32_t id, bool as_ids) {
  if (as_ids) return "token_id:" + std::to_string(id);
  return app.codec->decode({id}, false);
}

namespace {
json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char ch : s) b.push_back(static_cast<int>(ch));
  return b;
}
double safe_lp(float v) { return std::isfinite(v) ? static_cast<double>(v) : -9999.0; }
}  // namespace

json chat_logprobs_json(const App& app, const std::vector<engine::PositionLogprobs>& lps, bool as_ids) {
  json content = json::array();
  for (const auto& p : lps) {
    const std::string t = token_text(app, p.chosen.token_id, as_ids);
    json top = json::array();
    for (const auto& alt : p.top) {
      const std::string at = token_text(app, alt.token_id, as_ids);
      top.push_back({{"token", at}, {"logprob", safe_lp(alt.logprob)}, {"bytes", bytes_of(at)}});
    }
    content.push_back({{"token", t}, {"logprob", safe_lp(p.chosen.logprob)}, {"bytes", bytes_of(t)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

json completion_logprobs_json(const App& app, const std::vector<engine::PositionLogprobs>& lps, bool as_ids,
                              size_t text_offset, const std::vector<int32_t>* prompt_ids) {
  json offsets = json::array(), token_lps = json::array(), tokens = json::array(), tops = json::array();
  size_t off = text_offset;
  auto add = [&](int32_t id, json lp, json top) {
    const std::string t = token_text(app, id, as_ids);
    offsets.push_back(off);
    off += t.size();
    tokens.push_back(t);
    token_lps.push_back(std::move(lp));
    tops.push_back(std::move(top));
  };
  if (prompt_ids) {
    for (size_t i = 0; i < prompt_ids->size(); ++i) add((*prompt_ids)[i], nullptr, nullptr);
  }
  for (const auto& p : lps) {
    json top = json::object();
    for (const auto& alt : p.top) top[token_text(app, alt.token_id, as_ids)] = safe_lp(alt.logprob);
    top[token_text(app, p.chosen.token_id, as_ids)] = safe_lp(p.chosen.logprob);
    add(p.chosen.token_id, safe_lp(p.chosen.logprob), top);
  }
  return {{"text_offset", offsets}, {"token_logprobs", token_lps}, {"tokens", tokens}, {"top_logprobs", tops}};
}

json prompt_logprobs_json(const App& app, const std::vector<engine::PositionLogprobs>& lps) {
  json out = json::array();
  for (size_t i = 0; i < lps.size(); ++i) {
    if (i == 0) {
      out.push_back(nullptr);
      continue;
    }
    json e = json::object();
    const auto& p = lps[i];
    e[std::to_string(p.chosen.token_id)] = {{"logprob", safe_lp(p.chosen.logprob)}, {"rank", p.chosen.rank},
                                            {"decoded_token", token_text(app, p.chosen.token_id, false)}};
    for (const auto& alt : p.top)
      e[std::to_string(alt.token_id)] = {{"logprob", safe_lp(alt.logprob)}, {"rank", alt.rank},
                                         {"decoded_token", token_text(app, alt.token_id, false)}};
    out.push_back(e);
  }
  return out;
}

json usage_json(const App& app, int64_t prompt_tokens, int64_t completion_tokens) {
  json u = {{"prompt_tokens", prompt_tokens},
            {"total_tokens", prompt_tokens + completion_tokens},
            {"completion_tokens", completion_tokens},
            {"prompt_tokens_details", nullptr}};
  if (app.cfg.enable_prompt_tokens_details) u["prompt_tokens_details"] = {{"cached_tokens", 0}};
  return u;
}

std::string sse_stream_error(const Status& error) {
  ApiError e = from_status(error);
  if (e.status < 500) e.status = 500;
  return sse_event(e.to_json()) + sse_done();
}

std::string sse_stream_end(const App& app, const Submission& sub, bool include_usage, const std::string& id,
                           const char* object, int64_t created, const std::string& model) {
  std::string out;
  if (include_usage)
    out += sse_event({{"id", id}, {"object", object}, {"created", created}, {"model", model},
                      {"choices", json::array()}, {"usage", stream_usage_json(app, sub, /*continuous=*/false)}});
  return out + sse_done();
}

json stream_usage_json(const App& app, const Submission& sub, bool continuous) {
  json u = usage_json(app, sub.prompt_tokens, sub.completion_tokens());
  if (continuous || u["prompt_tokens_details"].is_null()) u.erase("prompt_tokens_details");
  return u;
}

std::string make_request_id(const httplib::Request& req, const GenRequest& g, const char* prefix) {
  std::string base = req.get_header_value("X-Request-Id");
  if (base.empty() && g.request_id) base = *g.request_id;
  if (base.empty()) base = random_hex(16);
  return std::string(prefix) + base;
}

}  // namespace ds::server
