// NfQueue: one NFQUEUE queue, read on the libuv loop (as serialport's Poller wraps uv_poll).
// C++ only moves packets and verdicts; parsing and decisions are TypeScript.
#ifndef TANDEM_NATIVE_NFQUEUE_H_
#define TANDEM_NATIVE_NFQUEUE_H_

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

struct nfq_handle;
struct nfq_q_handle;
struct nfq_data;
struct nfgenmsg;

namespace tandem {

/** JS: new NfQueue(queueNum, { copyRange, maxLen, failOpen, rcvBufBytes }, onPackets, onError?) */
class NfQueue : public Napi::ObjectWrap<NfQueue> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit NfQueue(const Napi::CallbackInfo& info);
  ~NfQueue() override;

 private:
  /** Counters behind stats(). */
  struct Counters {
    double packets = 0;
    double batches = 0;
    double enobufs = 0;
    double recv_errors = 0;
    double callback_errors = 0;
  };

  Napi::Value Verdict(const Napi::CallbackInfo& info);
  Napi::Value VerdictBatch(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);

  /** Opens and configures the queue; returns 0, or errno with *syscall naming the call. */
  int Open(uint16_t queue_num, uint32_t copy_range, uint32_t max_len, bool fail_open, int rcv_buf_bytes,
           const char** syscall);
  /** Releases the queue, the handle and the poll watcher. Idempotent; calls no JS. */
  void Shutdown();
  /** Readiness: drains the socket, then hands the batch to JS once. */
  void OnReadable(int status);
  /** Parse callback of nfq_handle_packet: appends one packet object to the current batch. */
  void AddPacket(nfq_data* nfad);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static int OnPacket(nfq_q_handle* qh, nfgenmsg* msg, nfq_data* nfad, void* data);

  nfq_handle* h_ = nullptr;
  nfq_q_handle* qh_ = nullptr;
  int fd_ = -1;
  /** Heap-allocated: libuv owns it until its close callback, which may outlive this object. */
  uv_poll_t* poll_ = nullptr;
  bool closed_ = false;
  /** True while we hold a strong reference, keeping the JS object alive while it is open. */
  bool ref_held_ = false;
  std::vector<char> recv_buf_;
  Napi::FunctionReference on_packets_;
  Napi::FunctionReference on_error_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  /** The batch being filled; set only during OnReadable. */
  Napi::Array* batch_ = nullptr;
  uint32_t batch_len_ = 0;
  Counters counters_;
};

}  // namespace tandem

#endif  // TANDEM_NATIVE_NFQUEUE_H_
