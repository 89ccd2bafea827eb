#include "errors.h"

#include <uv.h>

#include <cmath>

namespace tandem {

Napi::Error ErrnoError(Napi::Env env, int errnum, const char* syscall) {
  // libuv names errors as negative numbers on Unix; uv_err_name_r/uv_strerror_r copy into
  // our buffers, so unknown values do not leak the strings uv_err_name would allocate.
  char code[64];
  char text[128];
  uv_err_name_r(-errnum, code, sizeof code);
  uv_strerror_r(-errnum, text, sizeof text);
  Napi::Error err = Napi::Error::New(env, std::string(syscall) + " failed: " + text + " (" + code + ")");
  err.Value().Set("errno", Napi::Number::New(env, errnum));
  err.Value().Set("code", Napi::String::New(env, code));
  err.Value().Set("syscall", Napi::String::New(env, syscall));
  return err;
}

void ThrowErrno(Napi::Env env, int errnum, const char* syscall) { throw ErrnoError(env, errnum, syscall); }

static int64_t CheckInteger(Napi::Env env, Napi::Value value, const char* name, int64_t min, int64_t max) {
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(env, std::string(name) + " must be an integer");
  }
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    throw Napi::TypeError::New(env, std::string(name) + " must be an integer in [" + std::to_string(min) + ", " +
                                        std::to_string(max) + "]");
  }
  return static_cast<int64_t>(d);
}

int64_t ArgInteger(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min, int64_t max) {
  return CheckInteger(info.Env(), info[index], name, min, max);
}

int ArgFd(const Napi::CallbackInfo& info, size_t index) {
  return static_cast<int>(ArgInteger(info, index, "fd", 0, INT32_MAX));
}

int ArgFamily(const Napi::CallbackInfo& info, size_t index) {
  const int64_t family = ArgInteger(info, index, "family", 4, 6);
  if (family != 4 && family != 6) {
    throw Napi::TypeError::New(info.Env(), "family must be 4 or 6");
  }
  return static_cast<int>(family);
}

int64_t PropInteger(Napi::Object obj, const char* key, int64_t min, int64_t max, int64_t fallback) {
  Napi::Value value = obj.Get(key);
  if (value.IsUndefined()) {
    return fallback;
  }
  return CheckInteger(obj.Env(), value, key, min, max);
}

std::string PropString(Napi::Object obj, const char* key) {
  Napi::Value value = obj.Get(key);
  if (!value.IsString()) {
    throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a string");
  }
  return value.As<Napi::String>().Utf8Value();
}

}  // namespace tandem
