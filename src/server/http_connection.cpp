#include "http_connection.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace ds::server {

namespace {

// poll(2) for `events` within timeout_ms, retrying on EINTR; true when any event is ready.
bool wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r >= 0) return r > 0;
    if (errno != EINTR) return false;
  }
}

void ip_and_port(const sockaddr_storage& addr, socklen_t len, std::string& ip, int& port) {
  char host[NI_MAXHOST] = {0};
  char serv[NI_MAXSERV] = {0};
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof(host), serv, sizeof(serv),
                  NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(serv);
  }
}

// One TCP connection as httplib's Stream, kept for the connection's whole life so bytes read ahead
// (a pipelined next request) are not lost between requests. Reads are buffered because httplib's
// line reader asks for one byte at a time.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, int read_timeout_ms, int write_timeout_ms)
      : fd_(fd), read_timeout_ms_(read_timeout_ms), write_timeout_ms_(write_timeout_ms) {}

  bool has_buffered() const { return off_ < len_; }

  // FIN (POLLRDHUP), reset (POLLERR) or hang-up: the client will not read a response. Readable
  // data alone is a pipelined request, not a disconnect.
  bool peer_closed() const {
    pollfd p{fd_, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
  }

  bool is_readable() const override { return has_buffered() || wait_for(fd_, POLLIN, read_timeout_ms_); }
  bool is_writable() const override { return wait_for(fd_, POLLOUT, write_timeout_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    if (!has_buffered()) {
      if (!wait_for(fd_, POLLIN, read_timeout_ms_)) return -1;
      ssize_t n;
      do {
        n = ::recv(fd_, buf_, sizeof(buf_), 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      off_ = 0;
      len_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, len_ - off_);
    std::memcpy(ptr, buf_ + off_, n);
    off_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do {
      n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) ip_and_port(addr, len, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) ip_and_port(addr, len, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  int fd_;
  int read_timeout_ms_, write_timeout_ms_;
  char buf_[4096];
  size_t off_ = 0, len_ = 0;
};

// The connection this thread is serving; handlers run on it synchronously.
thread_local const ConnectionStream* t_connection = nullptr;

int to_ms(time_t sec, time_t usec) { return static_cast<int>(sec * 1000 + usec / 1000); }

}  // namespace

bool client_disconnected() { return t_connection != nullptr && t_connection->peer_closed(); }

bool KeepAliveServer::process_and_close_socket(socket_t sock) {
  ConnectionStream strm(sock, to_ms(read_timeout_sec_, read_timeout_usec_),
                        to_ms(write_timeout_sec_, write_timeout_usec_));
  t_connection = &strm;
  // Waits for the next request: true when bytes (or EOF, which process_request then reports) are
  // there; false after keep_alive_timeout_sec_ idle or once the server stopped (svr_sock_ closed).
  auto next_request = [&] {
    if (strm.has_buffered()) return true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
    while (svr_sock_ != INVALID_SOCKET) {
      if (wait_for(sock, POLLIN, 50)) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
    }
    return false;
  };
  bool ok = false;
  while (next_request()) {
    const bool stopping = svr_sock_ == INVALID_SOCKET;  // last response says Connection: close
    bool connection_closed = false;
    ok = process_request(strm, stopping, connection_closed, nullptr);
    if (!ok || connection_closed || stopping) break;
  }
  t_connection = nullptr;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace ds::server
