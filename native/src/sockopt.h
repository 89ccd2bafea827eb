// Socket options the proxy needs that Node does not expose: the original destination of a
// redirected flow, the congestion control module, TCP_INFO and plain integer options.
#ifndef TANDEM_NATIVE_SOCKOPT_H_
#define TANDEM_NATIVE_SOCKOPT_H_

#include <napi.h>

namespace tandem {

/** Adds getOriginalDst, setCongestion, getCongestion, getTcpInfo, setSockOptInt,
 *  getSockOptInt and the `constants` object to `exports`. */
void InitSockopt(Napi::Env env, Napi::Object exports);

}  // namespace tandem

#endif  // TANDEM_NATIVE_SOCKOPT_H_
