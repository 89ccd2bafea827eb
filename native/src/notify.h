// sd_notify(3) without libsystemd: one datagram to the service manager's notification socket.
// Node has no AF_UNIX datagram sockets, so this lives in the addon.
#ifndef TANDEM_NATIVE_NOTIFY_H_
#define TANDEM_NATIVE_NOTIFY_H_

#include <napi.h>

namespace tandem {

/** Adds sdNotify(socketPath, message) to `exports`. */
void InitNotify(Napi::Env env, Napi::Object exports);

}  // namespace tandem

#endif  // TANDEM_NATIVE_NOTIFY_H_
