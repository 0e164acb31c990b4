// `--uds PATH`: the HTTP library (cpp-httplib 0.11) cannot listen on a Unix socket, so the server
// binds 127.0.0.1 on an ephemeral port and this relay accepts on PATH and pipes bytes both ways to
// that port. Owns the socket file (created at start, unlinked at stop), the accept thread and one
// thread per relayed connection.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "deltaserve/core/status.h"

namespace ds::server {

class UdsRelay {
 public:
  // Removes a stale socket at `path` (refuses any other kind of file), listens there and relays
  // each connection to 127.0.0.1:target_port.
  static Result<std::unique_ptr<UdsRelay>> start(const std::string& path, int target_port);
  ~UdsRelay();
  UdsRelay(const UdsRelay&) = delete;
  UdsRelay& operator=(const UdsRelay&) = delete;

  // Idempotent: stops accepting, closes every relayed connection, waits for their threads and
  // unlinks the socket file.
  void stop();

 private:
  UdsRelay(std::string path, int target_port, int listen_fd, int stop_rd, int stop_wr);
  void accept_loop();
  void relay_connection(int client_fd);

  const std::string path_;
  const int target_port_;
  int listen_fd_;
  int stop_rd_, stop_wr_;  // a pipe: one byte written at stop() wakes every poll()
  std::atomic<bool> stopped_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::condition_variable conns_done_;
  int active_conns_ = 0;  // guarded by mu_
};

}  // namespace ds::server
