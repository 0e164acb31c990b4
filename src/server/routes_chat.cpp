// POST /v1/chat/completions: parse -> render the chat template -> tokenize -> submit n choices ->
// the final JSON, or SSE chunks in vLLM's order (role, deltas, finish, usage, [DONE]).
#include <memory>

#include "chat_output.h"
#include "chat_render.h"
#include "deltaserve/core/log.h"
#include "deltaserve/text/parsers/tool_choice.h"
#include "http_connection.h"
#include "sse.h"
#include "submission.h"

namespace ds::server {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct ChatCtx {
  std::string id, model;
  int64_t created = 0;
  std::string echo_text;  // content prefix when echo is on
  ChatOutputOptions out_opts;
};

void put_reasoning(const App& app, json* obj, const std::optional<std::string>& r, bool parser_on) {
  const std::string& f = app.cfg.reasoning_field;
  json v = r ? json(*r) : json(nullptr);
  if (!parser_on || f != "reasoning_content") (*obj)["reasoning"] = v;
  if (parser_on && f != "reasoning") (*obj)["reasoning_content"] = v;
}

json delta_json(const App& app, const ChatDelta& d, bool parser_on) {
  json j = json::object();
  if (!d.reasoning.empty()) {
    const std::string& f = app.cfg.reasoning_field;
    if (f != "reasoning_content") j["reasoning"] = d.reasoning;
    if (parser_on && f != "reasoning") j["reasoning_content"] = d.reasoning;
  }
  if (!d.content.empty()) j["content"] = d.content;
  if (!d.tool_calls.empty()) j["tool_calls"] = d.tool_calls;
  return j;
}

void merge(ChatDelta* a, const ChatDelta& b) {
  a->reasoning += b.reasoning;
  a->content += b.content;
  for (const auto& t : b.tool_calls) a->tool_calls.push_back(t);
}

class ChatStream : public SseProducer {
 public:
  ChatStream(App* app, GenRequest g, std::unique_ptr<Submission> sub, ChatCtx ctx)
      : app_(app), g_(std::move(g)), sub_(std::move(sub)), ctx_(std::move(ctx)) {
    for (size_t i = 0; i < sub_->choices.size(); ++i) outputs_.emplace_back(ctx_.out_opts);
    pending_lps_.resize(sub_->choices.size());
  }

  bool poll(std::string* out, std::chrono::milliseconds wait) override {
    if (complete_) return true;
    if (!started_) {
      started_ = true;
      for (const auto& c : sub_->choices) {
        *out += sse_event(chunk(c.index, {{"role", app_->cfg.response_role}, {"content", ""}}, nullptr));
        if (!ctx_.echo_text.empty()) *out += sse_event(chunk(c.index, {{"content", ctx_.echo_text}}, nullptr));
      }
      return false;
    }
    bool waited = false;
    for (size_t i = 0; i < sub_->choices.size(); ++i) {
      ChoiceState& c = sub_->choices[i];
      if (c.done()) continue;
      auto ev = c.handle.stream->pop_all(waited ? 0ms : wait);
      waited = true;
      if (!ev) continue;
      if (!ev->error.is_ok()) {
        c.absorb(*ev);
        *out += sse_stream_error(ev->error);
        sub_->abort_all();
        complete_ = true;
        return true;
      }
      for (auto& l : ev->logprobs) pending_lps_[i].push_back(l);
      ChatDelta d = outputs_[i].feed(ev->token_ids, ev->text);
      c.absorb(*ev);
      if (c.done()) {
        const json engine_reason = finish_reason_json(c);
        merge(&d, outputs_[i].finish(engine_reason.is_string() ? engine_reason.get<std::string>() : "stop"));
        json ch = chunk(c.index, delta_json(*app_, d, ctx_.out_opts.reasoning_parser), take_lps(i));
        ch["choices"][0]["finish_reason"] = outputs_[i].finish_reason();
        ch["choices"][0]["stop_reason"] = stop_reason_json(c.stop_reason);
        *out += sse_event(ch);
      } else if (!d.empty()) {
        *out += sse_event(chunk(c.index, delta_json(*app_, d, ctx_.out_opts.reasoning_parser), take_lps(i)));
      }
    }
    if (!sub_->all_done()) return false;
    *out += sse_stream_end(*app_, *sub_, g_.include_usage, ctx_.id, "chat.completion.chunk", ctx_.created,
                           ctx_.model);
    complete_ = true;
    return true;
  }

  void cancel() override { sub_->abort_all(); }

 private:
  json take_lps(size_t i) {
    if (!g_.chat_logprobs || pending_lps_[i].empty()) return nullptr;
    json j = chat_logprobs_json(*app_, pending_lps_[i], g_.return_tokens_as_token_ids);
    pending_lps_[i].clear();
    return j;
  }
  json chunk(int index, json delta, json logprobs) {
    json choice = {{"index", index}, {"delta", std::move(delta)}, {"logprobs", std::move(logprobs)},
                   {"finish_reason", nullptr}};
    json j = {{"id", ctx_.id}, {"object", "chat.completion.chunk"}, {"created", ctx_.created},
              {"model", ctx_.model}, {"choices", json::array({choice})}};
    if (g_.include_usage && g_.continuous_usage_stats) {
      j["usage"] = stream_usage_json(*app_, *sub_, /*continuous=*/true);
    }
    return j;
  }

  App* app_;
  GenRequest g_;
  std::unique_ptr<Submission> sub_;
  ChatCtx ctx_;
  std::vector<ChatOutput> outputs_;
  std::vector<std::vector<engine::PositionLogprobs>> pending_lps_;
  bool started_ = false, complete_ = false;
};

std::string last_message_text(const json& msgs, const std::string& role) {
  if (msgs.empty() || json_str(msgs.back(), "role") != role) return {};
  const json c = msgs.back().is_object() ? msgs.back().value("content", json()) : json();
  if (c.is_string()) return c.get<std::string>();
  std::string out;
  if (c.is_array())
    for (const auto& p : c)
      if (p.is_object() && json_str(p, "type") == "text" && p.contains("text") && p["text"].is_string())
        out += p["text"].get<std::string>();
  return out;
}

}  // namespace

void handle_chat(App& app, const httplib::Request& req, httplib::Response& res) {
  json body;
  if (auto e = parse_body(req, &body)) return send_error(res, *e);
  GenRequest g;
  if (auto e = parse_gen_request(body, /*chat=*/true, app.cfg, &g)) return send_error(res, *e);
  ChatRenderInput in;
  in.tmpl = app.chat_template.get();
  in.raw_body = &req.body;
  in.messages = &body["messages"];
  in.tools = body.contains("tools") ? &body["tools"] : nullptr;
  in.add_generation_prompt = g.add_generation_prompt;
  in.continue_final_message = g.continue_final_message;
  in.chat_template_kwargs = g.chat_template_kwargs;
  std::string prompt;
  if (auto e = render_chat(in, app.cfg, &prompt)) return send_error(res, *e);
  auto ids = app.codec->encode(prompt, g.add_special_tokens);
  if (!ids) return send_error(res, from_status(ids.status()));
  if (app.cfg.enable_log_requests) {
    DS_INFO << "Received chat request: prompt_tokens=" << ids->size();
  }

  auto sub = std::make_unique<Submission>(&app);
  if (auto e = sub->add_prompt(g, *ids, prompt)) return send_error(res, *e);

  ChatCtx ctx;
  ctx.id = make_request_id(req, g, "chatcmpl-");
  ctx.model = g.model_name;
  ctx.created = unix_time();
  if (g.echo) ctx.echo_text = last_message_text(body["messages"], app.cfg.response_role);
  const auto& k = g.chat_template_kwargs;
  const bool thinking = !(k.contains("enable_thinking") && k["enable_thinking"].is_boolean() &&
                          !k["enable_thinking"].get<bool>());
  ctx.out_opts.reasoning_parser = !app.cfg.reasoning_parser.empty();
  ctx.out_opts.start_in_reasoning = thinking && prompt_starts_in_reasoning(prompt);
  ctx.out_opts.include_reasoning = g.include_reasoning;
  ctx.out_opts.tool_parser =
      text::tool_parsing_enabled(body, app.cfg.enable_auto_tool_choice, app.cfg.tool_call_parser);
  ctx.out_opts.parallel_tool_calls = !(body.contains("parallel_tool_calls") && body["parallel_tool_calls"].is_boolean() &&
                                       !body["parallel_tool_calls"].get<bool>());
  if (body.contains("tools") && body["tools"].is_array()) ctx.out_opts.tools = body["tools"];
  ctx.out_opts.ids = app.control_ids;
  ctx.out_opts.by_token_ids = g.params.stop.empty();

  if (g.stream) {
    stream_sse(res, std::make_shared<ChatStream>(&app, std::move(g), std::move(sub), std::move(ctx)));
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
    ChatOutput out(ctx.out_opts);
    out.feed(c.ids, c.text);
    const json engine_reason = finish_reason_json(c);
    out.finish(engine_reason.is_string() ? engine_reason.get<std::string>() : "stop");
    json msg = {{"role", app.cfg.response_role}, {"content", nullptr}, {"refusal", nullptr},
                {"annotations", nullptr}, {"audio", nullptr}, {"function_call", nullptr},
                {"tool_calls", out.tool_calls()}};
    auto content = out.content();
    if (!ctx.echo_text.empty()) content = ctx.echo_text + content.value_or("");
    msg["content"] = content ? json(*content) : json(nullptr);
    put_reasoning(app, &msg, out.reasoning(), ctx.out_opts.reasoning_parser);
    json choice = {{"index", c.index},
                   {"message", msg},
                   {"logprobs", g.chat_logprobs ? chat_logprobs_json(app, c.logprobs, g.return_tokens_as_token_ids)
                                                : json(nullptr)},
                   {"finish_reason", out.finish_reason()},
                   {"stop_reason", stop_reason_json(c.stop_reason)},
                   {"token_ids", g.return_token_ids ? json(c.ids) : json(nullptr)}};
    choices.push_back(choice);
  }
  const ChoiceState& first = sub->choices.front();
  json resp = {{"id", ctx.id},
               {"object", "chat.completion"},
               {"created", ctx.created},
               {"model", ctx.model},
               {"choices", choices},
               {"service_tier", nullptr},
               {"system_fingerprint", nullptr},
               {"usage", usage_json(app, sub->prompt_tokens, sub->completion_tokens())},
               {"prompt_logprobs", first.prompt_logprobs ? prompt_logprobs_json(app, *first.prompt_logprobs)
                                                         : json(nullptr)},
               {"prompt_token_ids", g.return_token_ids ? json(first.prompt_ids) : json(nullptr)},
               {"kv_transfer_params", nullptr}};
  send_json(res, 200, resp);
}

}  // namespace ds::server
