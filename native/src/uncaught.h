// Reporting errors that happen on the libuv loop, outside any JS call.
#ifndef TANDEM_NATIVE_UNCAUGHT_H_
#define TANDEM_NATIVE_UNCAUGHT_H_

#include <napi.h>

namespace tandem {

/** Hands `err` to process 'uncaughtException', as Node does for a throwing event listener.
 *  Used in libuv callbacks, where there is no JS caller to throw to. */
inline void ReportUncaught(Napi::Env env, const Napi::Error& err) {
  napi_fatal_exception(env, err.Value());
}

}  // namespace tandem

#endif  // TANDEM_NATIVE_UNCAUGHT_H_
