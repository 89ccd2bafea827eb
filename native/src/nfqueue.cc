#include "nfqueue.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

// libnetfilter_queue.h needs the fixed-width types and in.h above; it is a C header.
extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"
#include "uncaught.h"

namespace tandem {
namespace {

// Netfilter verdicts (linux/netfilter.h, stable ABI). Spelled out here because that header
// drags in linux/in.h, which clashes with glibc's netinet/in.h.
constexpr unsigned int kNfDrop = 0;
constexpr unsigned int kNfAccept = 1;
constexpr unsigned int kNfRepeat = 4;

// One netlink message carries at most NFQNL_MAX_COPY_RANGE (65535) payload bytes plus its
// attributes; a smaller buffer would truncate a packet and lose its id (no verdict possible).
constexpr size_t kRecvBufferBytes = 65535 + 8192;

// recv() calls per readiness event. uv_poll is level-triggered, so whatever is left is read on
// the next loop turn; the cap keeps one busy queue from starving timers and sockets.
constexpr int kMaxRecvPerWake = 1024;

unsigned int ArgVerdict(const Napi::CallbackInfo& info, size_t index) {
  if (info[index].IsString()) {
    const std::string v = info[index].As<Napi::String>().Utf8Value();
    if (v == "accept") return kNfAccept;
    if (v == "drop") return kNfDrop;
    if (v == "repeat") return kNfRepeat;
  }
  throw Napi::TypeError::New(info.Env(), "verdict must be 'accept', 'drop' or 'repeat'");
}

bool HasArg(const Napi::CallbackInfo& info, size_t index) {
  return info.Length() > index && !info[index].IsUndefined();
}

void FreePoll(uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); }

}  // namespace

void NfQueue::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "NfQueue",
                                    {
                                        InstanceMethod("verdict", &NfQueue::Verdict),
                                        InstanceMethod("verdictBatch", &NfQueue::VerdictBatch),
                                        InstanceMethod("close", &NfQueue::Close),
                                        InstanceMethod("stats", &NfQueue::Stats),
                                    });
  exports.Set("NfQueue", ctor);
}

NfQueue::NfQueue(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NfQueue>(info) {
  Napi::Env env = info.Env();
  const auto queue_num = static_cast<uint16_t>(ArgInteger(info, 0, "queueNum", 0, 65535));
  if (!info[1].IsObject()) {
    throw Napi::TypeError::New(env, "options must be an object");
  }
  Napi::Object opts = info[1].As<Napi::Object>();
  const auto copy_range = static_cast<uint32_t>(PropInteger(opts, "copyRange", 0, 65535, 65535));
  const auto max_len = static_cast<uint32_t>(PropInteger(opts, "maxLen", 1, UINT32_MAX, 1024));
  const auto rcv_buf_bytes = static_cast<int>(PropInteger(opts, "rcvBufBytes", 0, INT32_MAX, 0));
  Napi::Value fail_open_value = opts.Get("failOpen");
  if (!fail_open_value.IsUndefined() && !fail_open_value.IsBoolean()) {
    throw Napi::TypeError::New(env, "failOpen must be a boolean");
  }
  const bool fail_open = fail_open_value.IsBoolean() && fail_open_value.As<Napi::Boolean>().Value();
  if (!info[2].IsFunction()) {
    throw Napi::TypeError::New(env, "onPackets must be a function");
  }
  if (HasArg(info, 3) && !info[3].IsFunction()) {
    throw Napi::TypeError::New(env, "onError must be a function");
  }

  const char* syscall = "";
  const int err = Open(queue_num, copy_range, max_len, fail_open, rcv_buf_bytes, &syscall);
  if (err != 0) {
    Shutdown();
    ThrowErrno(env, err, syscall);
  }
  on_packets_ = Napi::Persistent(info[2].As<Napi::Function>());
  if (HasArg(info, 3)) {
    on_error_ = Napi::Persistent(info[3].As<Napi::Function>());
  }
  async_context_ = std::make_unique<Napi::AsyncContext>(env, "tandem:NfQueue");
  // Like a listening server, an open queue keeps itself (and the loop) alive until close().
  Ref();
  ref_held_ = true;
}

NfQueue::~NfQueue() {
  // The reference is being torn down with us: do not touch it.
  ref_held_ = false;
  Shutdown();
}

int NfQueue::Open(uint16_t queue_num, uint32_t copy_range, uint32_t max_len, bool fail_open, int rcv_buf_bytes,
                  const char** syscall) {
  h_ = nfq_open();
  if (h_ == nullptr) {
    *syscall = "nfq_open";
    return errno != 0 ? errno : EIO;
  }
  // Kernels since 3.8 ignore PF (un)binding; older ones need it. An unbind failure is harmless.
  nfq_unbind_pf(h_, AF_INET);
  nfq_unbind_pf(h_, AF_INET6);
  if (nfq_bind_pf(h_, AF_INET) < 0 || nfq_bind_pf(h_, AF_INET6) < 0) {
    *syscall = "nfq_bind_pf";
    return errno;
  }
  qh_ = nfq_create_queue(h_, queue_num, &NfQueue::OnPacket, this);
  if (qh_ == nullptr) {
    *syscall = "nfq_create_queue";
    return errno != 0 ? errno : EIO;
  }
  if (nfq_set_mode(qh_, NFQNL_COPY_PACKET, copy_range) < 0) {
    *syscall = "nfq_set_mode";
    return errno;
  }
  if (nfq_set_queue_maxlen(qh_, max_len) < 0) {
    *syscall = "nfq_set_queue_maxlen";
    return errno;
  }
  // GSO: queue GSO super-packets whole instead of having the kernel segment them first.
  const uint32_t mask = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO;
  const uint32_t flags = (fail_open ? NFQA_CFG_F_FAIL_OPEN : 0) | NFQA_CFG_F_GSO;
  if (nfq_set_queue_flags(qh_, mask, flags) < 0) {
    *syscall = "nfq_set_queue_flags";
    return errno;
  }
  fd_ = nfq_fd(h_);
  // Without this an overrun socket reports ENOBUFS and sets POLLERR; we would rather lose
  // the packets silently (fail-open or queue-bypass decides their fate) and keep reading.
  const int one = 1;
  if (setsockopt(fd_, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one) != 0) {
    *syscall = "setsockopt(NETLINK_NO_ENOBUFS)";
    return errno;
  }
  if (rcv_buf_bytes > 0 && setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcv_buf_bytes, sizeof rcv_buf_bytes) != 0) {
    // Without CAP_NET_ADMIN fall back to the rmem_max-capped option.
    if (errno != EPERM || setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcv_buf_bytes, sizeof rcv_buf_bytes) != 0) {
      *syscall = "setsockopt(SO_RCVBUFFORCE)";
      return errno;
    }
  }
  recv_buf_.resize(kRecvBufferBytes);

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(Env(), &loop) != napi_ok) {
    *syscall = "napi_get_uv_event_loop";
    return EINVAL;
  }
  auto* poll = new uv_poll_t{};
  int uv_err = uv_poll_init(loop, poll, fd_);
  if (uv_err != 0) {
    delete poll;
    *syscall = "uv_poll_init";
    return -uv_err;
  }
  poll->data = this;
  poll_ = poll;
  uv_err = uv_poll_start(poll_, UV_READABLE, &NfQueue::OnPoll);
  if (uv_err != 0) {
    *syscall = "uv_poll_start";
    return -uv_err;
  }
  return 0;
}

void NfQueue::Shutdown() {
  if (closed_) {
    return;
  }
  closed_ = true;
  if (poll_ != nullptr) {
    // Stop watching before nfq_close closes the fd, as libuv requires.
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), FreePoll);
    poll_ = nullptr;
  }
  if (qh_ != nullptr) {
    nfq_destroy_queue(qh_);
    qh_ = nullptr;
  }
  if (h_ != nullptr) {
    nfq_close(h_);
    h_ = nullptr;
  }
  fd_ = -1;
  if (ref_held_) {
    ref_held_ = false;
    Unref();
  }
}

void NfQueue::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<NfQueue*>(handle->data);
  if (self != nullptr) {
    self->OnReadable(status);
  }
}

int NfQueue::OnPacket(nfq_q_handle* /*qh*/, nfgenmsg* /*msg*/, nfq_data* nfad, void* data) {
  // We are inside C code (nfq_handle_packet): no exception may cross it.
  auto* self = static_cast<NfQueue*>(data);
  try {
    self->AddPacket(nfad);
  } catch (...) {
    self->counters_.callback_errors++;
  }
  return 0;
}

void NfQueue::AddPacket(nfq_data* nfad) {
  if (batch_ == nullptr) {
    return;
  }
  const nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfad);
  if (ph == nullptr) {
    return;
  }
  Napi::Env env = Env();
  Napi::Object p = Napi::Object::New(env);
  p.Set("id", Napi::Number::New(env, ntohl(ph->packet_id)));
  p.Set("hwProtocol", Napi::Number::New(env, ntohs(ph->hw_protocol)));
  p.Set("mark", Napi::Number::New(env, nfq_get_nfmark(nfad)));
  p.Set("indev", Napi::Number::New(env, nfq_get_indev(nfad)));
  p.Set("outdev", Napi::Number::New(env, nfq_get_outdev(nfad)));
  p.Set("physindev", Napi::Number::New(env, nfq_get_physindev(nfad)));
  p.Set("physoutdev", Napi::Number::New(env, nfq_get_physoutdev(nfad)));
  timeval tv{};
  if (nfq_get_timestamp(nfad, &tv) == 0) {
    p.Set("timestampMs", Napi::Number::New(env, static_cast<double>(tv.tv_sec) * 1000.0 +
                                                    static_cast<double>(tv.tv_usec) / 1000.0));
  }
  unsigned char* payload = nullptr;
  const int len = nfq_get_payload(nfad, &payload);
  if (len > 0 && payload != nullptr) {
    // A copy: recv_buf_ is overwritten by the next recv().
    p.Set("payload", Napi::Buffer<uint8_t>::Copy(env, payload, static_cast<size_t>(len)));
  } else {
    p.Set("payload", Napi::Buffer<uint8_t>::New(env, 0));
  }
  batch_->Set(batch_len_++, p);
  counters_.packets++;
}

void NfQueue::OnReadable(int status) {
  if (closed_) {
    return;
  }
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  // A local handle to our own JS object: if onPackets calls close() (which drops the strong
  // reference), the object, and so this C++ instance, stays alive until we return.
  Napi::Object self = Value();
  try {
    Napi::Array batch = Napi::Array::New(env);
    batch_ = &batch;
    batch_len_ = 0;
    int fatal = 0;
    for (int i = 0; i < kMaxRecvPerWake; ++i) {
      const ssize_t n = recv(fd_, recv_buf_.data(), recv_buf_.size(), MSG_DONTWAIT);
      if (n < 0) {
        const int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) break;
        if (e == ENOBUFS) {
          // The kernel dropped messages for us; the socket itself is still good.
          counters_.enobufs++;
          continue;
        }
        counters_.recv_errors++;
        fatal = e;
        break;
      }
      if (n == 0) break;
      // Non-packet messages (netlink errors for stale verdict ids) return -1: not ours to act on.
      nfq_handle_packet(h_, recv_buf_.data(), static_cast<int>(n));
    }
    batch_ = nullptr;
    if (fatal != 0) {
      uv_poll_stop(poll_);
    } else if (status < 0) {
      // libuv stops the watcher when it sees POLLERR; the recv above consumed the socket
      // error, so watch again.
      uv_poll_start(poll_, UV_READABLE, &NfQueue::OnPoll);
    }
    if (batch_len_ > 0) {
      counters_.batches++;
      // onPackets may call close(): nothing below may touch the queue without checking closed_.
      on_packets_.MakeCallback(self, {batch}, *async_context_);
    }
    if (fatal != 0 && !on_error_.IsEmpty()) {
      on_error_.MakeCallback(self, {ErrnoError(env, fatal, "recv").Value()}, *async_context_);
    }
  } catch (const Napi::Error& err) {
    batch_ = nullptr;
    ReportUncaught(env, err);
  }
}

Napi::Value NfQueue::Verdict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto id = static_cast<uint32_t>(ArgInteger(info, 0, "id", 0, UINT32_MAX));
  const unsigned int verdict = ArgVerdict(info, 1);
  const bool has_mark = HasArg(info, 2);
  const auto mark = has_mark ? static_cast<uint32_t>(ArgInteger(info, 2, "mark", 0, UINT32_MAX)) : 0;
  if (qh_ == nullptr) {
    ThrowErrno(env, EBADF, "nfq_set_verdict (queue closed)");
  }
  // nfq_set_verdict2 converts the mark to network order itself.
  const int rc = has_mark ? nfq_set_verdict2(qh_, id, verdict, mark, 0, nullptr)
                          : nfq_set_verdict(qh_, id, verdict, 0, nullptr);
  if (rc < 0) {
    ThrowErrno(env, errno, "nfq_set_verdict");
  }
  return env.Undefined();
}

Napi::Value NfQueue::VerdictBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto max_id = static_cast<uint32_t>(ArgInteger(info, 0, "maxId", 0, UINT32_MAX));
  const unsigned int verdict = ArgVerdict(info, 1);
  const bool has_mark = HasArg(info, 2);
  const auto mark = has_mark ? static_cast<uint32_t>(ArgInteger(info, 2, "mark", 0, UINT32_MAX)) : 0;
  if (qh_ == nullptr) {
    ThrowErrno(env, EBADF, "nfq_set_verdict_batch (queue closed)");
  }
  const int rc = has_mark ? nfq_set_verdict_batch2(qh_, max_id, verdict, mark)
                          : nfq_set_verdict_batch(qh_, max_id, verdict);
  if (rc < 0) {
    ThrowErrno(env, errno, "nfq_set_verdict_batch");
  }
  return env.Undefined();
}

Napi::Value NfQueue::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  on_packets_.Reset();
  on_error_.Reset();
  return info.Env().Undefined();
}

Napi::Value NfQueue::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("open", Napi::Boolean::New(env, !closed_));
  out.Set("packets", Napi::Number::New(env, counters_.packets));
  out.Set("batches", Napi::Number::New(env, counters_.batches));
  out.Set("enobufs", Napi::Number::New(env, counters_.enobufs));
  out.Set("recvErrors", Napi::Number::New(env, counters_.recv_errors));
  out.Set("callbackErrors", Napi::Number::New(env, counters_.callback_errors));
  return out;
}

}  // namespace tandem
