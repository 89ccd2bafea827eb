#include "sockopt.h"

#include <arpa/inet.h>
#include <linux/sockios.h>  // SIOCOUTQNSD
#include <linux/tcp.h>  // struct tcp_info with the current fields; glibc's netinet/tcp.h lags.
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "address.h"
#include "errors.h"

// From linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h, which do not mix well
// with glibc's netinet/in.h. Both are 80 and part of the stable kernel ABI.
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
// Kernel-internal (include/net/tcp.h): the longest congestion control name, with its NUL.
#define TANDEM_TCP_CA_NAME_MAX 16

namespace tandem {
namespace {

// getOriginalDst(fd, family: 4 | 6): { address, port }
Napi::Value GetOriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  const int family = ArgFamily(info, 1);
  if (family == 4) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sa, &len) != 0) {
      ThrowErrno(env, errno, "getsockopt(SO_ORIGINAL_DST)");
    }
    return AddressObject(env, AF_INET, &sa.sin_addr, sa.sin_port);
  }
  sockaddr_in6 sa6{};
  socklen_t len = sizeof sa6;
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &sa6, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt(IP6T_SO_ORIGINAL_DST)");
  }
  return AddressObject(env, AF_INET6, &sa6.sin6_addr, sa6.sin6_port);
}

// setCongestion(fd, name): undefined
Napi::Value SetCongestion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  if (!info[1].IsString()) {
    throw Napi::TypeError::New(env, "name must be a string");
  }
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  if (name.empty() || name.size() >= TANDEM_TCP_CA_NAME_MAX) {
    throw Napi::TypeError::New(env, "name must be 1 to 15 bytes long");
  }
  if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(), static_cast<socklen_t>(name.size())) != 0) {
    ThrowErrno(env, errno, "setsockopt(TCP_CONGESTION)");
  }
  return env.Undefined();
}

// getCongestion(fd): string
Napi::Value GetCongestion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  char name[TANDEM_TCP_CA_NAME_MAX + 1] = {};
  socklen_t len = TANDEM_TCP_CA_NAME_MAX;
  if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt(TCP_CONGESTION)");
  }
  return Napi::String::New(env, name, strnlen(name, len));
}

// getTcpInfo(fd): object with the fields of struct tcp_info the schedulers use.
Napi::Value GetTcpInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  // Zeroed so fields an older kernel does not fill (it returns a shorter struct) read 0.
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt(TCP_INFO)");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("state", Napi::Number::New(env, ti.tcpi_state));
  out.Set("rttUs", Napi::Number::New(env, ti.tcpi_rtt));
  out.Set("rttVarUs", Napi::Number::New(env, ti.tcpi_rttvar));
  out.Set("minRttUs", Napi::Number::New(env, ti.tcpi_min_rtt));
  out.Set("sndCwnd", Napi::Number::New(env, ti.tcpi_snd_cwnd));
  out.Set("sndMss", Napi::Number::New(env, ti.tcpi_snd_mss));
  out.Set("totalRetrans", Napi::Number::New(env, ti.tcpi_total_retrans));
  out.Set("lost", Napi::Number::New(env, ti.tcpi_lost));
  out.Set("unacked", Napi::Number::New(env, ti.tcpi_unacked));
  out.Set("sacked", Napi::Number::New(env, ti.tcpi_sacked));
  out.Set("retransOut", Napi::Number::New(env, ti.tcpi_retrans));
  // 64-bit counters become doubles: exact up to 2^53 bytes, far beyond any connection.
  out.Set("deliveryRate", Napi::Number::New(env, static_cast<double>(ti.tcpi_delivery_rate)));
  out.Set("bytesAcked", Napi::Number::New(env, static_cast<double>(ti.tcpi_bytes_acked)));
  out.Set("bytesReceived", Napi::Number::New(env, static_cast<double>(ti.tcpi_bytes_received)));
  out.Set("notsentBytes", Napi::Number::New(env, ti.tcpi_notsent_bytes));
  // Pacing as the kernel applies it (the lower of the congestion control's and the cap).
  out.Set("pacingRate", Napi::Number::New(env, static_cast<double>(ti.tcpi_pacing_rate)));
  out.Set("maxPacingRate", Napi::Number::New(env, static_cast<double>(ti.tcpi_max_pacing_rate)));
  out.Set("delivered", Napi::Number::New(env, ti.tcpi_delivered));
  out.Set("bytesSent", Napi::Number::New(env, static_cast<double>(ti.tcpi_bytes_sent)));
  out.Set("bytesRetrans", Napi::Number::New(env, static_cast<double>(ti.tcpi_bytes_retrans)));
  out.Set("deliveryRateAppLimited", Napi::Boolean::New(env, ti.tcpi_delivery_rate_app_limited != 0));
  return out;
}

// getUnsentBytes(fd): bytes in the socket's send queue not yet sent (SIOCOUTQNSD). One ioctl,
// cheap enough for the scheduler to ask before each frame: data the kernel cannot send now
// (congestion or receive window full) waits there a round trip, so a frame goes elsewhere.
Napi::Value GetUnsentBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  int n = 0;
  if (ioctl(fd, SIOCOUTQNSD, &n) != 0) {
    ThrowErrno(env, errno, "ioctl(SIOCOUTQNSD)");
  }
  return Napi::Number::New(env, n);
}

// setSockOptInt(fd, level, optname, value): undefined
Napi::Value SetSockOptInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  const int level = static_cast<int>(ArgInteger(info, 1, "level", 0, INT32_MAX));
  const int optname = static_cast<int>(ArgInteger(info, 2, "optname", 0, INT32_MAX));
  const int value = static_cast<int>(ArgInteger(info, 3, "value", INT32_MIN, INT32_MAX));
  if (setsockopt(fd, level, optname, &value, sizeof value) != 0) {
    ThrowErrno(env, errno, "setsockopt");
  }
  return env.Undefined();
}

// setLinger(fd, seconds): undefined. seconds < 0 turns lingering off (the default close);
// 0 makes close() send RST, which is how a crash of the process looks to the application.
Napi::Value SetLinger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  const int seconds = static_cast<int>(ArgInteger(info, 1, "seconds", -1, 3600));
  struct linger l;
  l.l_onoff = seconds >= 0 ? 1 : 0;
  l.l_linger = seconds >= 0 ? seconds : 0;
  if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0) {
    ThrowErrno(env, errno, "setsockopt SO_LINGER");
  }
  return env.Undefined();
}

// setMaxPacingRate(fd, bytesPerSec): undefined. SO_MAX_PACING_RATE caps the socket's pacing
// (any congestion control since Linux 4.13: TCP paces internally when no fq qdisc does). The
// value goes as a 64-bit integer, which kernels since 4.20 read whole (older ones take the low
// 32 bits, enough for 4 GB/s); 0 lifts the cap (~0).
Napi::Value SetMaxPacingRate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  if (!info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "bytesPerSec must be a number");
  }
  const double rate = info[1].As<Napi::Number>().DoubleValue();
  if (!(rate >= 0) || rate > 9007199254740991.0) {
    throw Napi::TypeError::New(env, "bytesPerSec must be from 0 to 2^53 - 1");
  }
  uint64_t value = rate == 0 ? ~static_cast<uint64_t>(0) : static_cast<uint64_t>(rate);
  if (setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &value, sizeof value) != 0) {
    ThrowErrno(env, errno, "setsockopt(SO_MAX_PACING_RATE)");
  }
  return env.Undefined();
}

// getSockOptInt(fd, level, optname): number
Napi::Value GetSockOptInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = ArgFd(info, 0);
  const int level = static_cast<int>(ArgInteger(info, 1, "level", 0, INT32_MAX));
  const int optname = static_cast<int>(ArgInteger(info, 2, "optname", 0, INT32_MAX));
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, level, optname, &value, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt");
  }
  return Napi::Number::New(env, value);
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("SOL_SOCKET", Napi::Number::New(env, SOL_SOCKET));
  c.Set("SOL_IP", Napi::Number::New(env, SOL_IP));
  c.Set("SOL_IPV6", Napi::Number::New(env, SOL_IPV6));
  // SOL_TCP lives in glibc's netinet/tcp.h, which clashes with linux/tcp.h; it equals IPPROTO_TCP.
  c.Set("SOL_TCP", Napi::Number::New(env, IPPROTO_TCP));
  c.Set("SO_SNDBUF", Napi::Number::New(env, SO_SNDBUF));
  c.Set("SO_RCVBUF", Napi::Number::New(env, SO_RCVBUF));
  c.Set("SO_SNDBUFFORCE", Napi::Number::New(env, SO_SNDBUFFORCE));
  c.Set("SO_RCVBUFFORCE", Napi::Number::New(env, SO_RCVBUFFORCE));
  c.Set("SO_MARK", Napi::Number::New(env, SO_MARK));
  c.Set("SO_MAX_PACING_RATE", Napi::Number::New(env, SO_MAX_PACING_RATE));
  c.Set("IP_TRANSPARENT", Napi::Number::New(env, IP_TRANSPARENT));
  c.Set("IPV6_TRANSPARENT", Napi::Number::New(env, IPV6_TRANSPARENT));
  c.Set("TCP_NODELAY", Napi::Number::New(env, TCP_NODELAY));
  c.Set("TCP_NOTSENT_LOWAT", Napi::Number::New(env, TCP_NOTSENT_LOWAT));
  c.Freeze();
  return c;
}

}  // namespace

void InitSockopt(Napi::Env env, Napi::Object exports) {
  exports.Set("getOriginalDst", Napi::Function::New(env, GetOriginalDst, "getOriginalDst"));
  exports.Set("setCongestion", Napi::Function::New(env, SetCongestion, "setCongestion"));
  exports.Set("getCongestion", Napi::Function::New(env, GetCongestion, "getCongestion"));
  exports.Set("getTcpInfo", Napi::Function::New(env, GetTcpInfo, "getTcpInfo"));
  exports.Set("getUnsentBytes", Napi::Function::New(env, GetUnsentBytes, "getUnsentBytes"));
  exports.Set("setSockOptInt", Napi::Function::New(env, SetSockOptInt, "setSockOptInt"));
  exports.Set("getSockOptInt", Napi::Function::New(env, GetSockOptInt, "getSockOptInt"));
  exports.Set("setMaxPacingRate", Napi::Function::New(env, SetMaxPacingRate, "setMaxPacingRate"));
  exports.Set("setLinger", Napi::Function::New(env, SetLinger, "setLinger"));
  exports.Set("constants", Constants(env));
}

}  // namespace tandem
