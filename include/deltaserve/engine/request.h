// What flows between HTTP threads and the engine thread: a submitted request, the events the
// engine produces for it, and the thread-safe per-request queue that carries them. The engine only
// ever pushes (never blocks); the HTTP thread pops at its own pace, merging what piled up.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/core/status.h"
#include "deltaserve/engine/sampling_params.h"

namespace ds::engine {

enum class FinishReason {
  kNone = 0,
  kStop,    // EOS, a stop token or a stop string ("stop")
  kLength,  // max_tokens or max_model_len reached ("length")
  kAbort,   // cancelled by the client, shutdown, or an engine error ("abort")
};
const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort", or nullptr

// One candidate token with its log-probability (raw model distribution, as vLLM's default), and a
// position's chosen token + top-k alternatives: the backend's result types, passed through as is.
using TokenLogprob = backend::TokenLogprob;
using PositionLogprobs = backend::PositionLogprobs;

// A batch of progress for one request. Several events may be merged by RequestStream::pop_all.
struct RequestEvent {
  std::vector<int32_t> token_ids;          // newly generated ids
  std::string text;                        // newly final text (stop strings already handled)
  std::vector<PositionLogprobs> logprobs;  // one per new token when requested
  // Prompt logprobs (once, before the first token): entry 0 is empty (first prompt token).
  std::optional<std::vector<PositionLogprobs>> prompt_logprobs;
  FinishReason finish = FinishReason::kNone;
  std::variant<std::monostate, std::string, int32_t> stop_reason;  // string or token id, else null
  Status error;                            // non-ok: the engine failed this request
  int64_t num_prompt_tokens = 0;
  int64_t num_output_tokens = 0;           // total so far
};

class RequestStream {
 public:
  void push(RequestEvent ev);
  // Waits up to timeout for at least one event and returns all pending ones merged into one
  // (token ids, text and logprobs appended; the last finish/error wins). nullopt on timeout.
  std::optional<RequestEvent> pop_all(std::chrono::milliseconds timeout);
  bool finished() const;  // a finishing event has been pushed

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestEvent> q_;
  bool finished_ = false;
};

struct EngineRequest {
  std::string request_id;  // for logs
  std::vector<int32_t> prompt_token_ids;
  SamplingParams params;
  int n = 1;            // the parent request's n (for the request_params_n histogram)
  int child_index = 0;  // which of the n choices this is
};

// Handle returned by Engine::submit: the request's id inside the engine and its event stream.
struct RequestHandle {
  int64_t seq_id = -1;
  std::shared_ptr<RequestStream> stream;
};

}  // namespace ds::engine
