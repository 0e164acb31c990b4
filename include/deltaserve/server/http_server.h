// The OpenAI-compatible HTTP server (vLLM's routes, auth, CORS, root path, errors, SSE, metrics)
// on top of an Engine. Owns the listening socket and the connection threads; never touches engine
// state except through Engine's thread-safe calls.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "deltaserve/core/status.h"
#include "deltaserve/engine/engine.h"
#include "deltaserve/engine/text_codec.h"
#include "deltaserve/server/server_config.h"
#include "deltaserve/text/chat.h"
#include "deltaserve/text/parsers/output_parser.h"

namespace httplib {
class Server;
}

namespace ds::server {

struct App;

class HttpServer {
 public:
  HttpServer(ServerConfig cfg, engine::Engine* engine, const engine::TextCodec* codec);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Before serve(): the model's chat template (else a built-in ChatML fallback) and the ids of the
  // <think> / </think> / <tool_call> / </tool_call> tokens for the output parser.
  void set_chat_template(std::shared_ptr<const text::ChatTemplate> tmpl);
  void set_control_token_ids(const text::ControlTokenIds& ids);

  Status bind();  // host:port from the config; port 0 picks a free port
  int port() const { return port_; }
  void serve();   // blocks until stop(); in-flight requests finish before it returns
  void stop();    // thread-safe, idempotent: stops accepting new connections
  // Waits (at most max_wait) until no generation request is in flight, so aborted streams can
  // write their finish chunk and [DONE] before stop() (which cuts chunked responses short).
  void drain(std::chrono::milliseconds max_wait);

 private:
  void stats_loop();

  std::unique_ptr<App> app_;
  std::unique_ptr<httplib::Server> svr_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread stats_thread_;
};

}  // namespace ds::server
