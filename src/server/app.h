// Shared state of the HTTP layer (private to src/server): configuration, the engine and codec,
// HTTP counters for /metrics, and the helpers every route uses to answer.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "deltaserve/engine/engine.h"
#include "deltaserve/engine/text_codec.h"
#include "deltaserve/server/errors.h"
#include "deltaserve/server/server_config.h"
#include "deltaserve/text/chat.h"
#include "deltaserve/text/parsers/output_parser.h"

namespace ds::server {

struct App {
  ServerConfig cfg;
  engine::Engine* engine = nullptr;
  const engine::TextCodec* codec = nullptr;
  std::shared_ptr<const text::ChatTemplate> chat_template;  // null: built-in ChatML fallback
  text::ControlTokenIds control_ids;
  std::atomic<int> server_load{0};  // generation requests in flight: one per live Submission
  std::atomic<bool> shutting_down{false};

  std::mutex http_mu;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> http_requests;  // handler, method, status
  std::map<std::string, std::pair<double, uint64_t>> http_duration;                     // handler -> sum, count
};

void send_json(httplib::Response& res, int status, const nlohmann::json& j);
void send_error(httplib::Response& res, const ApiError& e);
// Parses a JSON request body; errors are vLLM's 400 / 415.
std::optional<ApiError> parse_body(const httplib::Request& req, nlohmann::json* out);
std::string random_hex(size_t n);
int64_t unix_time();

// Route handlers (routes_*.cpp).
void handle_chat(App& app, const httplib::Request& req, httplib::Response& res);
void handle_completions(App& app, const httplib::Request& req, httplib::Response& res);
void handle_models(App& app, const httplib::Request& req, httplib::Response& res);
void handle_tokenize(App& app, const httplib::Request& req, httplib::Response& res);
void handle_detokenize(App& app, const httplib::Request& req, httplib::Response& res);
void handle_invocations(App& app, const httplib::Request& req, httplib::Response& res);
std::string render_metrics(App& app);
// routes_openapi.cpp: the OpenAPI 3.1 document of every route above, and its HTML viewers.
nlohmann::json openapi_document(const ServerConfig& cfg);
void handle_openapi(App& app, const httplib::Request& req, httplib::Response& res);
void handle_docs(App& app, const httplib::Request& req, httplib::Response& res);
void handle_redoc(App& app, const httplib::Request& req, httplib::Response& res);

}  // namespace ds::server
