#include "transparent_connect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"
#include "uncaught.h"

namespace tandem {
namespace {

/** Where to bind and where to connect, already validated. */
struct Endpoints {
  int af = AF_INET;
  sockaddr_storage local{};
  sockaddr_storage remote{};
  socklen_t len = 0;
};

/** One connect in flight. Owns `fd` until it is handed to JS; freed when both uv handles
 *  have closed (libuv still references them until their close callbacks run). */
struct ConnectOp {
  ConnectOp(Napi::Env e, Napi::Promise::Deferred d, int f)
      : env(e), deferred(d), async_context(e, "tandem:transparentConnect"), fd(f) {}

  Napi::Env env;
  Napi::Promise::Deferred deferred;
  /** So promise reactions run (microtasks drain) when we settle from a libuv callback. */
  Napi::AsyncContext async_context;
  uv_poll_t poll{};
  uv_timer_t timer{};
  int fd;
  int open_handles = 0;
  bool settled = false;
};

void FillAddress(Napi::Env env, int af, const std::string& text, int64_t port, sockaddr_storage* out,
                 const char* what) {
  if (af == AF_INET) {
    auto* sa = reinterpret_cast<sockaddr_in*>(out);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, text.c_str(), &sa->sin_addr) != 1) {
      throw Napi::TypeError::New(env, std::string(what) + " must be an IPv4 address");
    }
  } else {
    auto* sa6 = reinterpret_cast<sockaddr_in6*>(out);
    sa6->sin6_family = AF_INET6;
    sa6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, text.c_str(), &sa6->sin6_addr) != 1) {
      throw Napi::TypeError::New(env, std::string(what) + " must be an IPv6 address");
    }
  }
}

void OnHandleClosed(uv_handle_t* handle) {
  auto* op = static_cast<ConnectOp*>(handle->data);
  if (--op->open_handles == 0) {
    delete op;
  }
}

/** Settles the promise once: resolves with the fd when errnum is 0, else closes the fd and
 *  rejects. Runs on the loop, so it opens its own handle and callback scopes. */
void Settle(ConnectOp* op, int errnum) {
  if (op->settled) {
    return;
  }
  op->settled = true;
  uv_poll_stop(&op->poll);
  uv_timer_stop(&op->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&op->poll), OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&op->timer), OnHandleClosed);
  if (errnum != 0) {
    close(op->fd);
  }
  Napi::Env env = op->env;
  Napi::HandleScope handle_scope(env);
  try {
    Napi::CallbackScope callback_scope(env, op->async_context);
    if (errnum == 0) {
      op->deferred.Resolve(Napi::Number::New(env, op->fd));
    } else {
      op->deferred.Reject(ErrnoError(env, errnum, errnum == ETIMEDOUT ? "connect (timeout)" : "connect").Value());
    }
  } catch (const Napi::Error& err) {
    ReportUncaught(env, err);
  }
}

void OnWritable(uv_poll_t* handle, int status, int /*events*/) {
  auto* op = static_cast<ConnectOp*>(handle->data);
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
    err = errno;
  }
  // libuv reports POLLERR as UV_EBADF and stops the handle; SO_ERROR holds the real cause.
  if (err == 0 && status < 0) {
    err = -status;
  }
  Settle(op, err);
}

void OnTimeout(uv_timer_t* handle) { Settle(static_cast<ConnectOp*>(handle->data), ETIMEDOUT); }

/** Sets an int socket option; returns 0 or errno. */
int SetInt(int fd, int level, int optname, int value) {
  return setsockopt(fd, level, optname, &value, sizeof value) == 0 ? 0 : errno;
}

// transparentConnect({ family, localAddress, localPort, remoteAddress, remotePort, mark?,
// timeoutMs }): Promise<fd>
Napi::Value TransparentConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    throw Napi::TypeError::New(env, "options must be an object");
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  const int64_t family = PropInteger(opts, "family", 4, 6, 0);
  if (family != 4 && family != 6) {
    throw Napi::TypeError::New(env, "family must be 4 or 6");
  }
  Endpoints ep;
  ep.af = family == 4 ? AF_INET : AF_INET6;
  ep.len = family == 4 ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  FillAddress(env, ep.af, PropString(opts, "localAddress"), PropInteger(opts, "localPort", 0, 65535, 0), &ep.local,
              "localAddress");
  const int64_t remote_port = PropInteger(opts, "remotePort", 1, 65535, -1);
  if (remote_port < 0) {
    throw Napi::TypeError::New(env, "remotePort is required");
  }
  FillAddress(env, ep.af, PropString(opts, "remoteAddress"), remote_port, &ep.remote, "remoteAddress");
  const int64_t mark = PropInteger(opts, "mark", 0, UINT32_MAX, -1);
  const int64_t timeout_ms = PropInteger(opts, "timeoutMs", 1, INT32_MAX, -1);
  if (timeout_ms < 0) {
    throw Napi::TypeError::New(env, "timeoutMs is required");
  }

  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  const int fd = socket(ep.af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    deferred.Reject(ErrnoError(env, errno, "socket").Value());
    return deferred.Promise();
  }
  int err = 0;
  const char* syscall = "setsockopt(IP_TRANSPARENT)";
  if (ep.af == AF_INET) {
    err = SetInt(fd, SOL_IP, IP_TRANSPARENT, 1);
  } else {
    syscall = "setsockopt(IPV6_TRANSPARENT)";
    err = SetInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
  }
  if (err == 0) {
    syscall = "setsockopt(SO_REUSEADDR)";
    err = SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  }
  if (err == 0 && mark >= 0) {
    syscall = "setsockopt(SO_MARK)";
    // The mark is a u32; the kernel reads the same bits through an int.
    err = SetInt(fd, SOL_SOCKET, SO_MARK, static_cast<int>(static_cast<uint32_t>(mark)));
  }
  if (err == 0) {
    syscall = "bind";
    err = bind(fd, reinterpret_cast<sockaddr*>(&ep.local), ep.len) == 0 ? 0 : errno;
  }
  if (err == 0) {
    syscall = "connect";
    if (connect(fd, reinterpret_cast<sockaddr*>(&ep.remote), ep.len) == 0) {
      deferred.Resolve(Napi::Number::New(env, fd));
      return deferred.Promise();
    }
    err = errno == EINPROGRESS ? 0 : errno;
  }
  if (err != 0) {
    close(fd);
    deferred.Reject(ErrnoError(env, err, syscall).Value());
    return deferred.Promise();
  }

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    close(fd);
    throw Napi::Error::New(env, "transparentConnect: no event loop");
  }
  auto* op = new ConnectOp(env, deferred, fd);
  op->poll.data = op;
  op->timer.data = op;
  err = uv_poll_init(loop, &op->poll, fd);
  if (err != 0) {
    delete op;
    close(fd);
    deferred.Reject(ErrnoError(env, -err, "uv_poll_init").Value());
    return deferred.Promise();
  }
  uv_timer_init(loop, &op->timer);  // Cannot fail on Unix.
  op->open_handles = 2;
  err = uv_poll_start(&op->poll, UV_WRITABLE, OnWritable);
  if (err == 0) {
    uv_timer_start(&op->timer, OnTimeout, static_cast<uint64_t>(timeout_ms), 0);
  } else {
    // Settle would open a callback scope we do not need inside a JS call; reject directly.
    op->settled = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&op->poll), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&op->timer), OnHandleClosed);
    close(fd);
    deferred.Reject(ErrnoError(env, -err, "uv_poll_start").Value());
  }
  return deferred.Promise();
}

}  // namespace

void InitTransparentConnect(Napi::Env env, Napi::Object exports) {
  exports.Set("transparentConnect", Napi::Function::New(env, TransparentConnect, "transparentConnect"));
}

}  // namespace tandem
