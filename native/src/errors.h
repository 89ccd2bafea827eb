// Error and argument helpers shared by every binding in the addon.
//
// Failed system calls become a JS `Error` carrying `errno` (a positive errno number, as
// the kernel reports it), `code` ("ENOENT") and `syscall`; native/index.ts turns those
// into a typed NativeError. Bad arguments are programming errors and throw `TypeError`.
#ifndef TANDEM_NATIVE_ERRORS_H_
#define TANDEM_NATIVE_ERRORS_H_

#include <napi.h>

#include <cstdint>
#include <string>

namespace tandem {

/** A JS Error for the system call `syscall` that failed with positive `errnum`. */
Napi::Error ErrnoError(Napi::Env env, int errnum, const char* syscall);

/** Throws ErrnoError(env, errnum, syscall) as a C++ exception (NAPI_CPP_EXCEPTIONS). */
[[noreturn]] void ThrowErrno(Napi::Env env, int errnum, const char* syscall);

/** Argument `index` as an integer in [min, max], else throws TypeError naming `name`. */
int64_t ArgInteger(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min, int64_t max);

/** Argument `index` as a file descriptor (int, >= 0), else throws TypeError. */
int ArgFd(const Napi::CallbackInfo& info, size_t index);

/** Argument `index` as an address family given as 4 or 6, else throws TypeError. */
int ArgFamily(const Napi::CallbackInfo& info, size_t index);

/** Property `key` of `obj` as an integer in [min, max]; `fallback` when absent/undefined. */
int64_t PropInteger(Napi::Object obj, const char* key, int64_t min, int64_t max, int64_t fallback);

/** Property `key` of `obj` as a string (required), else throws TypeError. */
std::string PropString(Napi::Object obj, const char* key);

}  // namespace tandem

#endif  // TANDEM_NATIVE_ERRORS_H_
