// Server-sent events over a chunked HTTP response (private to src/server). A producer is polled
// from the connection's thread; each poll returns the `data: ...\n\n` events that became ready.
// When a write fails (client gone) the producer is cancelled, which aborts its engine requests.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace ds::server {

class SseProducer {
 public:
  virtual ~SseProducer() = default;
  // Appends ready events to *out; returns true once the stream is complete ([DONE] written).
  virtual bool poll(std::string* out, std::chrono::milliseconds wait) = 0;
  virtual void cancel() = 0;
};

std::string sse_event(const nlohmann::json& j);  // "data: <json>\n\n"
inline const char* sse_done() { return "data: [DONE]\n\n"; }

void stream_sse(httplib::Response& res, std::shared_ptr<SseProducer> producer);

}  // namespace ds::server
