// Submitting a parsed request to the engine as n choices per prompt and collecting their events
// (private to src/server). A Submission is one generation request from the HTTP side: it counts in
// /load's server_load for as long as it lives (the JSON answer is written, or the stream's owner
// released it), and it aborts every unfinished choice when destroyed, so a handler that returns
// early (client gone, error) never leaves work running in the engine.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "app.h"
#include "deltaserve/server/openai_schema.h"

namespace ds::server {

struct ChoiceState {
  int index = 0;
  engine::RequestHandle handle;
  std::vector<int32_t> prompt_ids;
  std::string prompt_text;  // for echo
  std::vector<int32_t> ids;
  std::string text;
  std::vector<engine::PositionLogprobs> logprobs;
  std::optional<std::vector<engine::PositionLogprobs>> prompt_logprobs;
  engine::FinishReason finish = engine::FinishReason::kNone;
  std::variant<std::monostate, std::string, int32_t> stop_reason;
  Status error;
  bool done() const { return finish != engine::FinishReason::kNone || !error.is_ok(); }
  void absorb(engine::RequestEvent& ev);  // appends an event's tokens, text, logprobs, finish
};

class Submission {
 public:
  explicit Submission(App* app);
  ~Submission();
  Submission(const Submission&) = delete;
  Submission& operator=(const Submission&) = delete;

  // One prompt (ids + text for echo): submits req.n choices with indices base..base+n-1.
  std::optional<ApiError> add_prompt(GenRequest& req, std::vector<int32_t> ids, std::string text);
  // Non-streaming: waits until every choice finished (or the engine died) and returns true; if
  // client_gone() turns true first (checked at least every 50 ms), aborts them all and returns false,
  // so the engine frees their cache at its next step, as vLLM does for a disconnected client.
  bool wait_all(const std::function<bool()>& client_gone);
  void abort_all();
  bool all_done() const;
  int64_t completion_tokens() const;  // generated tokens over all choices

  std::vector<ChoiceState> choices;
  int64_t prompt_tokens = 0;  // summed over prompts (not choices), as vLLM's usage

 private:
  App* app_;
};

nlohmann::json stop_reason_json(const std::variant<std::monostate, std::string, int32_t>& r);
nlohmann::json finish_reason_json(const ChoiceState& c);
std::string token_text(const App& app, int32_t id, bool as_ids);
// Chat: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}
nlohmann::json chat_logprobs_json(const App& app, const std::vector<engine::PositionLogprobs>& lps, bool as_ids);
// Completions: {"text_offset","token_logprobs","tokens","top_logprobs"}; appends to `acc` when given.
nlohmann::json completion_logprobs_json(const App& app, const std::vector<engine::PositionLogprobs>& lps,
                                        bool as_ids, size_t text_offset, const std::vector<int32_t>* prompt_ids);
// vLLM's prompt_logprobs: [null, {id: {"logprob","rank","decoded_token"}}, ...]
nlohmann::json prompt_logprobs_json(const App& app, const std::vector<engine::PositionLogprobs>& lps);
nlohmann::json usage_json(const App& app, int64_t prompt_tokens, int64_t completion_tokens);
// Usage of a streamed response so far: on per-chunk (continuous) usage vLLM leaves out
// prompt_tokens_details; on the final usage chunk only when it is null.
nlohmann::json stream_usage_json(const App& app, const Submission& sub, bool continuous);
// An engine error after the stream started: an SSE error event (status >= 500), then [DONE].
std::string sse_stream_error(const Status& error);
// The end of a finished stream: the usage chunk when the client asked for it, then [DONE].
std::string sse_stream_end(const App& app, const Submission& sub, bool include_usage, const std::string& id,
                           const char* object, int64_t created, const std::string& model);
std::string make_request_id(const httplib::Request& req, const GenRequest& g, const char* prefix);

}  // namespace ds::server
