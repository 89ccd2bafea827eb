// Socket address -> JS { address, port }, formatted as Node formats its own addresses.
// Kept apart from sockopt.cc: uv.h pulls in glibc's netinet/tcp.h, whose struct tcp_info
// clashes with (and lags) the kernel's linux/tcp.h that sockopt.cc needs.
#ifndef TANDEM_NATIVE_ADDRESS_H_
#define TANDEM_NATIVE_ADDRESS_H_

#include <napi.h>

#include <cstdint>

namespace tandem {

/** { address, port } for an in_addr (af AF_INET) or in6_addr (AF_INET6) and a port in
 *  network byte order. */
Napi::Object AddressObject(Napi::Env env, int af, const void* addr, uint16_t port_be);

}  // namespace tandem

#endif  // TANDEM_NATIVE_ADDRESS_H_
