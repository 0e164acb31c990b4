#include "deltaserve/server/uds_relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>
#include <vector>

#include "deltaserve/core/log.h"

namespace ds::server {
namespace {

constexpr size_t kRelayBufferBytes = 64 * 1024;  // per direction per connection

std::string errno_text() {
  return std::strerror(errno);
}

bool set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

int connect_loopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One direction of a relayed connection: bytes read from `from` wait in `buf` until written to
// `to`. A new read happens only once the buffer is empty, so memory stays bounded.
struct Direction {
  Direction(int from_fd, int to_fd) : from(from_fd), to(to_fd) {}
  int from, to;
  std::vector<char> buf = std::vector<char>(kRelayBufferBytes);
  size_t len = 0, off = 0;
  bool eof = false;      // `from` reached end of stream
  bool shut_to = false;  // EOF forwarded as shutdown(to, SHUT_WR)
  bool pending() const { return off < len; }
  bool wants_read() const { return !eof && !pending(); }
  bool done() const { return eof && !pending(); }
};

// Moves what poll() said is possible; returns false on a socket error.
bool step(Direction& d, short from_revents, short to_revents) {
  if (d.wants_read() && (from_revents & (POLLIN | POLLHUP))) {
    const ssize_t n = recv(d.from, d.buf.data(), d.buf.size(), 0);
    if (n > 0) {
      d.len = static_cast<size_t>(n);
      d.off = 0;
    } else if (n == 0) {
      d.eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return false;
    }
  }
  if (d.pending() && (to_revents & (POLLOUT | POLLHUP))) {
    const ssize_t n = send(d.to, d.buf.data() + d.off, d.len - d.off, MSG_NOSIGNAL);
    if (n > 0) {
      d.off += static_cast<size_t>(n);
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return false;
    }
  }
  if (d.done() && !d.shut_to) {  // half-close: the peer sees EOF, the other direction still runs
    shutdown(d.to, SHUT_WR);
    d.shut_to = true;
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<UdsRelay>> UdsRelay::start(const std::string& path, int target_port) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return invalid_argument("--uds: path must be 1.." + std::to_string(sizeof(addr.sun_path) - 1) +
                            " bytes: '" + path + "'");
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return invalid_argument("--uds: " + path + " exists and is not a socket");
    if (unlink(path.c_str()) != 0)
      return internal_error("--uds: cannot remove stale socket " + path + ": " + errno_text());
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return internal_error("--uds: socket(): " + errno_text());
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, SOMAXCONN) != 0) {
    const std::string why = errno_text();
    close(fd);
    return internal_error("--uds: cannot listen on " + path + ": " + why);
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    const std::string why = errno_text();
    close(fd);
    unlink(path.c_str());
    return internal_error("--uds: pipe(): " + why);
  }
  std::unique_ptr<UdsRelay> relay(new UdsRelay(path, target_port, fd, pipe_fds[0], pipe_fds[1]));
  relay->accept_thread_ = std::thread([r = relay.get()] { r->accept_loop(); });
  return relay;
}

UdsRelay::UdsRelay(std::string path, int target_port, int listen_fd, int stop_rd, int stop_wr)
    : path_(std::move(path)),
      target_port_(target_port),
      listen_fd_(listen_fd),
      stop_rd_(stop_rd),
      stop_wr_(stop_wr) {}

UdsRelay::~UdsRelay() {
  stop();
  close(stop_rd_);
  close(stop_wr_);
}

void UdsRelay::stop() {
  if (stopped_.exchange(true)) return;
  const char byte = 1;
  if (write(stop_wr_, &byte, 1) != 1) {
    DS_WARN << "uds relay: cannot signal stop: " << errno_text();
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  close(listen_fd_);
  unlink(path_.c_str());
  std::unique_lock<std::mutex> lock(mu_);
  conns_done_.wait(lock, [this] { return active_conns_ == 0; });
}

void UdsRelay::accept_loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_rd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      DS_ERROR << "uds relay: poll(): " << errno_text();
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        DS_WARN << "uds relay: accept(): " << errno_text();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // e.g. EMFILE: do not spin
      }
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++active_conns_;
    }
    try {
      std::thread([this, client] { relay_connection(client); }).detach();
    } catch (const std::system_error& e) {  // out of threads: drop this connection, keep serving
      DS_WARN << "uds relay: cannot start a connection thread: " << e.what();
      close(client);
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_conns_ == 0) conns_done_.notify_all();
    }
  }
}

void UdsRelay::relay_connection(int client_fd) {
  const int upstream_fd = connect_loopback(target_port_);
  if (upstream_fd < 0) {
    DS_WARN << "uds relay: cannot connect to 127.0.0.1:" << target_port_ << ": " << errno_text();
  } else if (set_nonblocking(client_fd) && set_nonblocking(upstream_fd)) {
    Direction up{client_fd, upstream_fd}, down{upstream_fd, client_fd};
    while (!up.done() || !down.done()) {
      const short client_events =
          static_cast<short>((up.wants_read() ? POLLIN : 0) | (down.pending() ? POLLOUT : 0));
      const short upstream_events =
          static_cast<short>((down.wants_read() ? POLLIN : 0) | (up.pending() ? POLLOUT : 0));
      // A negative fd is skipped by poll(), so a side with nothing to do cannot spin on POLLHUP.
      pollfd fds[3] = {{client_events ? client_fd : -1, client_events, 0},
                       {upstream_events ? upstream_fd : -1, upstream_events, 0},
                       {stop_rd_, POLLIN, 0}};
      if (poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[2].revents) break;
      if ((fds[0].revents | fds[1].revents) & (POLLERR | POLLNVAL)) break;
      if (!step(up, fds[0].revents, fds[1].revents) || !step(down, fds[1].revents, fds[0].revents)) break;
    }
  }
  if (upstream_fd >= 0) close(upstream_fd);
  close(client_fd);
  std::lock_guard<std::mutex> lock(mu_);
  if (--active_conns_ == 0) conns_done_.notify_all();
}

}  // namespace ds::server
