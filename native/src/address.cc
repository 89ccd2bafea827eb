#include "address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <uv.h>

#include "errors.h"

namespace tandem {

Napi::Object AddressObject(Napi::Env env, int af, const void* addr, uint16_t port_be) {
  char text[INET6_ADDRSTRLEN];
  // libuv's formatter, not glibc's: the text then matches what Node reports for sockets
  // (the two differ for IPv4-compatible IPv6 addresses such as ::2).
  const int err = uv_inet_ntop(af, addr, text, sizeof text);
  if (err != 0) {
    ThrowErrno(env, -err, "uv_inet_ntop");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("address", Napi::String::New(env, text));
  out.Set("port", Napi::Number::New(env, ntohs(port_be)));
  return out;
}

}  // namespace tandem
