// POST /v1/completions (legacy completions): prompt as text, token ids or lists of either; echo;
// integer logprobs with text offsets; SSE streaming with the same ordering rules as chat.
#include <memory>

#include "deltaserve/core/log.h"
#include "http_connection.h"
#include "sse.h"
#include "submission.h"

namespace ds::server {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct CmplCtx {
  std::string id, model;
  int64_t created = 0;
};

class CompletionStream : public SseProducer {
 public:
  CompletionStream(App* app, GenRequest g, std::unique_ptr<Submission> sub, CmplCtx ctx)
      : app_(app), g_(std::move(g)), sub_(std::move(sub)), ctx_(std::move(ctx)),
        offsets_(sub_->choices.size(), 0) {}

  bool poll(std::string* out, std::chrono::milliseconds wait) override {
    if (complete_) return true;
    if (!started_) {
      started_ = true;
      if (g_.echo) {
        for (auto& c : sub_->choices) {
          *out += sse_event(chunk(c.index, c.prompt_text, nullptr));
          offsets_[c.index] = c.prompt_text.size();
        }
        return false;
      }
    }
    bool waited = false;
    for (auto& c : sub_->choices) {
      if (c.done()) continue;
      auto ev = c.handle.stream->pop_all(waited ? 0ms : wait);
      waited = true;
      if (!ev) continue;
      if (!ev->error.is_ok()) {
        *out += sse_stream_error(ev->error);
        sub_->abort_all();
        complete_ = true;
        return true;
      }
      json lps = nullptr;
      if (g_.completion_logprobs && !ev->logprobs.empty()) {
        lps = completion_logprobs_json(*app_, ev->logprobs, g_.return_tokens_as_token_ids, offsets_[c.index], nullptr);
      }
      const std::string text = ev->text;
      c.absorb(*ev);
      offsets_[c.index] += text.size();
      if (c.done()) {
        json ch = chunk(c.index, text, lps);
        ch["choices"][0]["finish_reason"] = finish_reason_json(c);
        ch["choices"][0]["stop_reason"] = stop_reason_json(c.stop_reason);
        *out += sse_event(ch);
      } else if (!text.empty()) {
        *out += sse_event(chunk(c.index, text, lps));
      }
    }
    if (!sub_->all_done()) return false;
    *out += sse_stream_end(*app_, *sub_, g_.include_usage, ctx_.id, "text_completion", ctx_.created, ctx_.model);
    complete_ = true;
    return true;
  }

  void cancel() override { sub_->abort_all(); }

 private:
  json chunk(int index, const std::string& text, json logprobs) {
    json choice = {{"index", index}, {"text", text}, {"logprobs", std::move(logprobs)},
                   {"finish_reason", nullptr}, {"stop_reason", nullptr}};
    json j = {{"id", ctx_.id}, {"object", "text_completion"}, {"created", ctx_.created},
              {"model", ctx_.model}, {"choices", json::array({choice})}};
    if (g_.include_usage && g_.continuous_usage_stats) {
      j["usage"] = stream_usage_json(*app_, *sub_, /*continuous=*/true);
    }
    return j;
  }

  App* app_;
  GenRequest g_;
  std::unique_ptr<Submission> sub_;
  CmplCtx ctx_;
  std::vector<size_t> offsets_;
  bool started_ = false, complete_ = false;
};

}  // namespace

void handle_completions(App& app, const httplib::Request& req, httplib::Response& res) {
  json body;
  if (auto e = parse_body(req, &body)) return send_error(res, *e);
  GenRequest g;
  if (auto e = parse_gen_request(body, /*chat=*/false, app.cfg, &g)) return send_error(res, *e);
  auto sub = std::make_unique<Submission>(&app);
  for (const auto& text : g.prompt_texts) {
    auto ids = app.codec->encode(text, g.add_special_tokens);
    if (!ids) return send_error(res, from_status(ids.status()));
    if (auto e = sub->add_prompt(g, *ids, text)) return send_error(res, *e);
  }
  for (const auto& ids : g.prompt_ids) {
    if (auto e = sub->add_prompt(g, ids, app.codec->decode(ids, false))) return send_error(res, *e);
  }
  if (app.cfg.enable_log_requests) {
    DS_INFO << "Received completion request: prompts=" << sub->choices.size();
  }
  CmplCtx ctx{make_request_id(req, g, "cmpl-"), g.model_name, unix_time()};
  if (g.stream) {
    stream_sse(res, std::make_shared<CompletionStream>(&app, std::move(g), std::move(sub), std::move(ctx)));
    return;
  }
  if (!sub->wait_all(client_disconnected)) return;  // aborted: nobody is left to read an answer
  json choices = json::array();
  for (auto& c : sub->choices) {
    if (!c.error.is_ok()) {
      ApiError e = from_status(c.error);
      if (e.status < 500) e.status = 500;
      return send_error(res, e);
    }
    const std::string prefix = g.echo ? c.prompt_text : std::string();
    json lps = nullptr;
    if (g.completion_logprobs) {
      lps = completion_logprobs_json(app, c.logprobs, g.return_tokens_as_token_ids, 0,
                                     g.echo ? &c.prompt_ids : nullptr);
      if (g.echo && c.prompt_logprobs) {  // echo + prompt logprobs: fill the prompt's entries
        for (size_t i = 1; i < c.prompt_logprobs->size() && i < lps["token_logprobs"].size(); ++i)
          lps["token_logprobs"][i] = (*c.prompt_logprobs)[i].chosen.logprob;
      }
    }
    choices.push_back({{"index", c.index},
                       {"text", prefix + c.text},
                       {"logprobs", lps},
                       {"finish_reason", finish_reason_json(c)},
                       {"stop_reason", stop_reason_json(c.stop_reason)},
                       {"token_ids", g.return_token_ids ? json(c.ids) : json(nullptr)},
                       {"prompt_logprobs", c.prompt_logprobs ? prompt_logprobs_json(app, *c.prompt_logprobs)
                                                             : json(nullptr)},
                       {"prompt_token_ids", g.return_token_ids ? json(c.prompt_ids) : json(nullptr)}});
  }
  send_json(res, 200,
            {{"id", ctx.id},
             {"object", "text_completion"},
             {"created", ctx.created},
             {"model", ctx.model},
             {"choices", choices},
             {"service_tier", nullptr},
             {"system_fingerprint", nullptr},
             {"usage", usage_json(app, sub->prompt_tokens, sub->completion_tokens())},
             {"kv_transfer_params", nullptr}});
}

}  // namespace ds::server
