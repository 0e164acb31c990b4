#include "deltaserve/server/http_server.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "app.h"
#include "deltaserve/core/log.h"
#include "deltaserve/core/version.h"
#include "http_connection.h"

namespace ds::server {

using nlohmann::json;

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

bool const_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

std::string join(const std::vector<std::string>& v) {
  std::string o;
  for (const auto& s : v) o += (o.empty() ? "" : ", ") + s;
  return o;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// httplib reads a request body only for POST/PUT/PATCH/DELETE, and not at all after a bad request
// line, bad headers or a multipart type without a boundary; the unread bytes would then be parsed
// as the next request on the connection (found by schemathesis). Such a response closes the
// connection after it: a body provider that writes the whole body and then reports failure makes
// httplib drop the connection once the response is out.
bool request_left_unread(const httplib::Request& req, const httplib::Response& res) {
  static const std::vector<std::string> kRead = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  const std::string len = req.get_header_value("Content-Length");
  const bool has_body = (!len.empty() && len != "0") || req.has_header("Transfer-Encoding");
  return !contains(kRead, req.method) || (has_body && req.body.empty()) ||
         res.get_header_value("Connection") == "close";
}

void close_after_response(httplib::Response& res) {
  res.headers.erase("Keep-Alive");
  res.headers.erase("Connection");
  res.set_header("Connection", "close");
  if (res.body.empty() || res.content_provider_) return;
  auto body = std::make_shared<std::string>(std::move(res.body));
  res.body.clear();
  const std::string type = res.get_header_value("Content-Type");
  res.headers.erase("Content-Type");  // set_content_provider adds it again
  res.set_content_provider(body->size(), type, [body](size_t off, size_t len, httplib::DataSink& sink) {
    sink.write(body->data() + off, len);
    return false;
  });
}

}  // namespace

HttpServer::HttpServer(ServerConfig cfg, engine::Engine* engine, const engine::TextCodec* codec)
    : app_(std::make_unique<App>()), svr_(std::make_unique<KeepAliveServer>()) {
  app_->cfg = std::move(cfg);
  app_->engine = engine;
  app_->codec = codec;
  App* app = app_.get();
  const ServerConfig& c = app->cfg;
  const int threads = c.http_threads > 0 ? c.http_threads : 64;
  svr_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  svr_->set_payload_max_length(c.max_request_body_bytes);
  svr_->set_keep_alive_timeout(c.keep_alive_s);
  svr_->set_write_timeout(30, 0);

  const std::string root = c.root_path.size() > 1 && c.root_path.back() == '/'
                               ? c.root_path.substr(0, c.root_path.size() - 1)
                               : (c.root_path == "/" ? "" : c.root_path);
  auto strip_root = [root](const std::string& path) {
    return !root.empty() && starts_with(path, root) ? path.substr(root.size()) : path;
  };

  svr_->set_pre_routing_handler([app, strip_root](const httplib::Request& req, httplib::Response& res) {
    const ServerConfig& c = app->cfg;
    const std::string origin = req.get_header_value("Origin");
    if (req.method == "OPTIONS" && !origin.empty() && req.has_header("Access-Control-Request-Method")) {
      const bool ok = contains(c.allowed_origins, "*") || contains(c.allowed_origins, origin);
      res.status = ok ? 200 : 400;
      if (ok) {
        res.set_header("Access-Control-Allow-Origin",
                       contains(c.allowed_origins, "*") && !c.allow_credentials ? "*" : origin);
        res.set_header("Access-Control-Allow-Methods", contains(c.allowed_methods, "*")
                                                           ? "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
                                                           : join(c.allowed_methods));
        const std::string req_headers = req.get_header_value("Access-Control-Request-Headers");
        res.set_header("Access-Control-Allow-Headers",
                       contains(c.allowed_headers, "*") ? req_headers : join(c.allowed_headers));
        if (c.allow_credentials) res.set_header("Access-Control-Allow-Credentials", "true");
        res.set_header("Access-Control-Max-Age", "600");
        res.set_content("OK", "text/plain");
      } else {
        res.set_content("Disallowed CORS origin", "text/plain");
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!c.api_keys.empty() && req.method != "OPTIONS" && starts_with(strip_root(req.path), "/v1")) {
      const std::string auth = req.get_header_value("Authorization");
      bool ok = false;
      if (auth.size() > 7 && (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0 ||
                              auth.compare(0, 7, "BEARER ") == 0)) {
        const std::string key = auth.substr(7);
        for (const auto& k : c.api_keys) ok |= const_time_equal(key, k);
      }
      if (!ok) {
        send_json(res, 401, {{"error", "Unauthorized"}});
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  svr_->set_post_routing_handler([app](const httplib::Request& req, httplib::Response& res) {
    const ServerConfig& c = app->cfg;
    if (request_left_unread(req, res)) close_after_response(res);
    // httplib announces its own cap ("timeout=5, max=5"); KeepAliveServer has no cap and, like
    // uvicorn, announces nothing.
    res.headers.erase("Keep-Alive");
    const std::string origin = req.get_header_value("Origin");
    if (!origin.empty()) {
      const bool any = contains(c.allowed_origins, "*");
      if (any || contains(c.allowed_origins, origin)) {
        res.set_header("Access-Control-Allow-Origin", any && !c.allow_credentials ? "*" : origin);
        if (c.allow_credentials) res.set_header("Access-Control-Allow-Credentials", "true");
      }
    }
    if (c.enable_request_id_headers) {
      std::string id = req.get_header_value("X-Request-Id");
      res.set_header("X-Request-Id", id.empty() ? random_hex(32) : id);
    }
  });

  svr_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty() || res.is_chunked_content_provider_) return;
    if (res.status == 413) {
      send_json(res, 413, ApiError{413, "Request body too large.", "", std::nullopt}.to_json());
    } else if (res.status == 404) {
      send_json(res, 404, {{"detail", "Not Found"}});
    } else if (res.status == 400) {  // httplib's own: the request could not be parsed
      send_error(res, bad_request("Bad request."));
      res.set_header("Connection", "close");
    } else if (res.status >= 500) {
      send_json(res, res.status, ApiError{res.status, "Internal server error.", "", std::nullopt}.to_json());
    }
  });
  svr_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    DS_ERROR << "request handler failed: " << what;
    send_json(res, 500, ApiError{500, what, "", std::nullopt}.to_json());
  });
  svr_->set_logger([app, strip_root](const httplib::Request& req, const httplib::Response& res) {
    const std::string path = strip_root(req.path);
    if (path == "/metrics" || path == "/health" || path == "/ping" || path == "/load" || path == "/version") return;
    std::lock_guard<std::mutex> lk(app->http_mu);
    app->http_requests[{path, req.method, std::to_string(res.status / 100) + "xx"}]++;
  });

  // Routes, with and without --root-path (a proxy may or may not strip it).
  // A route registered for one method answers every other (but OPTIONS, CORS) with FastAPI's 405.
  auto not_allowed = [](const httplib::Request&, httplib::Response& r) {
    send_json(r, 405, {{"detail", "Method Not Allowed"}});
  };
  auto route = [this, root, not_allowed](const char* method, const std::string& path, httplib::Server::Handler h) {
    for (const std::string& p : root.empty() ? std::vector<std::string>{path} : std::vector<std::string>{path, root + path}) {
      if (std::string(method) == "GET") {
        svr_->Get(p, h);
        if (p.find("ping") == std::string::npos) svr_->Post(p, not_allowed);
      } else {
        svr_->Post(p, h);
        if (p.find("ping") == std::string::npos) svr_->Get(p, not_allowed);
      }
      svr_->Put(p, not_allowed);
      svr_->Patch(p, not_allowed);
      svr_->Delete(p, not_allowed);
    }
  };
  route("POST", "/v1/chat/completions", [app](const auto& q, auto& r) { handle_chat(*app, q, r); });
  route("POST", "/v1/completions", [app](const auto& q, auto& r) { handle_completions(*app, q, r); });
  route("GET", "/v1/models", [app](const auto& q, auto& r) { handle_models(*app, q, r); });
  route("POST", "/tokenize", [app](const auto& q, auto& r) { handle_tokenize(*app, q, r); });
  route("POST", "/detokenize", [app](const auto& q, auto& r) { handle_detokenize(*app, q, r); });
  route("POST", "/invocations", [app](const auto& q, auto& r) { handle_invocations(*app, q, r); });
  auto health = [app](const httplib::Request&, httplib::Response& r) {
    r.status = app->engine->alive() ? 200 : 503;
    r.set_content("", "application/json");
  };
  route("GET", "/health", health);
  route("GET", "/ping", health);
  route("POST", "/ping", health);
  route("GET", "/version", [](const auto&, auto& r) { send_json(r, 200, {{"version", "0.17.1"}, {"deltaserve_version", DS_VERSION}}); });
  route("GET", "/load", [app](const auto&, auto& r) { send_json(r, 200, {{"server_load", app->server_load.load()}}); });
  route("GET", "/metrics", [app](const auto&, auto& r) {
    r.set_content(render_metrics(*app), "text/plain; version=0.0.4; charset=utf-8");
  });
  if (!c.disable_fastapi_docs) {
    route("GET", "/openapi.json", [app](const auto& q, auto& r) { handle_openapi(*app, q, r); });
    route("GET", "/docs", [app](const auto& q, auto& r) { handle_docs(*app, q, r); });
    route("GET", "/redoc", [app](const auto& q, auto& r) { handle_redoc(*app, q, r); });
  }
}

HttpServer::~HttpServer() {
  stop();
  if (stats_thread_.joinable()) stats_thread_.join();
}

void HttpServer::set_chat_template(std::shared_ptr<const text::ChatTemplate> tmpl) {
  app_->chat_template = std::move(tmpl);
}

void HttpServer::set_control_token_ids(const text::ControlTokenIds& ids) { app_->control_ids = ids; }

Status HttpServer::bind() {
  const ServerConfig& c = app_->cfg;
  const std::string host = c.host.empty() ? "0.0.0.0" : c.host;
  if (c.port == 0) {
    port_ = svr_->bind_to_any_port(host);
    if (port_ <= 0) return internal_error("could not bind " + host + " on any port");
  } else {
    if (!svr_->bind_to_port(host, c.port))
      return internal_error("[Errno 98] could not bind " + host + ":" + std::to_string(c.port) +
                            " (address already in use or not available)");
    port_ = c.port;
  }
  return Status::ok();
}

void HttpServer::serve() {
  stats_thread_ = std::thread([this] { stats_loop(); });
  svr_->listen_after_bind();
}

void HttpServer::drain(std::chrono::milliseconds max_wait) {
  app_->shutting_down = true;
  const auto deadline = std::chrono::steady_clock::now() + max_wait;
  while (app_->server_load.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void HttpServer::stop() {
  if (stopping_.exchange(true)) return;
  app_->shutting_down = true;
  svr_->stop();
}

// vLLM's periodic line: throughput since the last line, queue sizes, KV usage.
void HttpServer::stats_loop() {
  const auto interval = std::chrono::duration<double>(app_->cfg.log_stats_interval_s);
  auto last = std::chrono::steady_clock::now();
  engine::EngineStats prev = app_->engine->stats();
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto now = std::chrono::steady_clock::now();
    if (now - last < interval) continue;
    const engine::EngineStats s = app_->engine->stats();
    const double dt = std::chrono::duration<double>(now - last).count();
    const bool active = s.num_running || s.num_waiting || s.prompt_tokens_total != prev.prompt_tokens_total ||
                        s.generation_tokens_total != prev.generation_tokens_total;
    if (active && !app_->cfg.disable_log_stats) {
      char line[320];
      std::snprintf(line, sizeof(line),
                    "Engine 000: Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s, "
                    "Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%, Prefix cache hit rate: 0.0%%",
                    (s.prompt_tokens_total - prev.prompt_tokens_total) / dt,
                    (s.generation_tokens_total - prev.generation_tokens_total) / dt, s.num_running, s.num_waiting,
                    s.kv_usage * 100.0);
      DS_INFO << line;
    }
    prev = s;
    last = now;
  }
}

}  // namespace ds::server
