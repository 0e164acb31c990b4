// The per-connection loop of the HTTP server (private to src/server). cpp-httplib's own loop closes
// every connection after 5 requests (`Keep-Alive: max=5`) and gives a handler no way to learn that
// its client left; uvicorn, which vLLM runs on, does neither. This server keeps a connection open
// for any number of requests until it has been idle for the keep-alive timeout, and lets a handler
// running on the connection's thread ask whether the client is still there.
#pragma once

#include <httplib.h>

namespace ds::server {

class KeepAliveServer : public httplib::Server {
 private:
  // Called by httplib on a pool thread for each accepted socket; serves it until it is closed,
  // idle past the keep-alive timeout, or the server stops.
  bool process_and_close_socket(socket_t sock) override;
};

// On a handler's thread: true once the client of this connection closed or reset it (a request
// pipelined behind the current one is not a disconnect). False off a connection thread.
bool client_disconnected();

}  // namespace ds::server
