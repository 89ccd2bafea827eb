// tandem_native: the thin native layer of Tandem (house style rule 10). Every export is
// declared once, typed, in native/index.ts.
#include <napi.h>

#include "nfqueue.h"
#include "notify.h"
#include "sockopt.h"
#include "transparent_connect.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tandem::InitSockopt(env, exports);
  tandem::InitTransparentConnect(env, exports);
  tandem::NfQueue::Init(env, exports);
  tandem::InitNotify(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(tandem_native, Init)
