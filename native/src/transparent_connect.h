// Source-transparent TCP connect (IP_TRANSPARENT): the rx box dials destinations from the
// client's own address, as a TPROXY deployment needs.
#ifndef TANDEM_NATIVE_TRANSPARENT_CONNECT_H_
#define TANDEM_NATIVE_TRANSPARENT_CONNECT_H_

#include <napi.h>

namespace tandem {

/** Adds transparentConnect to `exports`. */
void InitTransparentConnect(Napi::Env env, Napi::Object exports);

}  // namespace tandem

#endif  // TANDEM_NATIVE_TRANSPARENT_CONNECT_H_
