// Windows side of the process backends: child processes, their exit codes, anonymous shared
// memory, and the worker's blocking pipe I/O. The engine names a worker by its pid, as on POSIX;
// here the pid leads to the process handle CreateProcessW returned, kept in a table until the
// worker is waited for (so the pid cannot be reused while we hold it). Every handle made here is
// non-inheritable; spawn.hpp makes short-lived inheritable copies for exactly one child.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <typeinfo>
#include <utility>

#include "../../errors.hpp"
#include "../exception_names.hpp"
#include "windows.hpp"

namespace parallel::detail::os {

using pid_type = long;
/// What a worker's loop reads and writes, and what names an arena to a spawned child.
using native_handle = HANDLE;

inline std::string last_error_text(DWORD err) {
  char* text = nullptr;
  const DWORD n = ::FormatMessageA(
      FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
      nullptr, err, 0, reinterpret_cast<char*>(&text), 0, nullptr);
  std::string out = n > 0 && text != nullptr ? std::string(text, n) : std::string();
  if (text != nullptr) ::LocalFree(text);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' '))
    out.pop_back();
  return out + " (error " + std::to_string(err) + ")";
}

[[noreturn]] inline void throw_last_error(const std::string& what, DWORD err = ::GetLastError()) {
  throw parallel::error("parallel: " + what + " failed: " + last_error_text(err));
}

/// An owned kernel handle (CloseHandle on destruction).
class owned_handle {
 public:
  owned_handle() noexcept = default;
  explicit owned_handle(HANDLE h) noexcept : h_(h == INVALID_HANDLE_VALUE ? nullptr : h) {}
  owned_handle(owned_handle&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  owned_handle& operator=(owned_handle&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, nullptr);
    }
    return *this;
  }
  owned_handle(const owned_handle&) = delete;
  owned_handle& operator=(const owned_handle&) = delete;
  ~owned_handle() { reset(); }

  HANDLE get() const noexcept { return h_; }
  explicit operator bool() const noexcept { return h_ != nullptr; }
  HANDLE release() noexcept { return std::exchange(h_, nullptr); }
  void reset() noexcept {
    if (h_ != nullptr) ::CloseHandle(h_);
    h_ = nullptr;
  }

 private:
  HANDLE h_ = nullptr;
};

/// The handles of the children this process started, by pid, until they are waited for.
class children {
 public:
  static void add(pid_type pid, HANDLE process) {
    std::lock_guard lock(mutex());
    table()[pid] = process;
  }
  /// The child's handle (still owned by the table), or nullptr once it was waited for.
  static HANDLE find(pid_type pid) {
    std::lock_guard lock(mutex());
    const auto it = table().find(pid);
    return it == table().end() ? nullptr : it->second;
  }
  static void forget(pid_type pid) noexcept {
    std::lock_guard lock(mutex());
    const auto it = table().find(pid);
    if (it == table().end()) return;
    ::CloseHandle(it->second);
    table().erase(it);
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::map<pid_type, HANDLE>& table() {
    static std::map<pid_type, HANDLE> t;
    return t;
  }
};

// TerminateProcess needs an exit code: these two say "stopped by the library", as POSIX's
// SIGKILL and SIGTERM would (Python uses 0x10000 for its terminate() the same way).
inline constexpr int kill_signal = 9;
inline constexpr int terminate_signal = 15;
inline constexpr DWORD terminated_base = 0x10000;

/// Ends `pid`, a child the library started and has not reaped (found in `children`: any other
/// pid is left alone).
inline void send_signal(pid_type pid, int signal) noexcept {
  if (pid <= 0) return;
  if (HANDLE h = children::find(pid)) ::TerminateProcess(h, terminated_base + signal);
}

/// The exit code as Python's Process.exitcode gives it on Windows: the code, or minus the
/// "signal" when the library stopped the process (kill() -> -9, terminate() -> -15).
inline int exit_code_of(int status) noexcept {
  const auto code = static_cast<DWORD>(status);
  if (code == terminated_base + kill_signal) return -kill_signal;
  if (code == terminated_base + terminate_signal) return -terminate_signal;
  return status;
}

/// True when the process did not exit by itself: it was terminated (TerminateProcess) or it
/// crashed (an exception code, 0xC...).
inline bool ended_by_signal(int status) noexcept {
  const auto code = static_cast<DWORD>(status);
  return code == terminated_base + kill_signal || code == terminated_base + terminate_signal ||
         (code & 0xF0000000u) == 0xC0000000u;
}

/// The exceptions a crashed Windows process reports as its exit code.
inline const char* exception_name(DWORD code) noexcept {
  switch (code) {
    case 0xC0000005:
      return "an access violation";
    case 0xC00000FD:
      return "a stack overflow";
    case 0xC0000409:
      return "a fast-fail (stack buffer overrun or std::terminate)";
    case 0xC000001D:
      return "an illegal instruction";
    case 0xC0000094:
      return "an integer division by zero";
    case 0xC0000374:
      return "a heap corruption";
    case 0xC0000135:
      return "a missing DLL";
    default:
      return nullptr;
  }
}

/// "exited with code 3" / "crashed with an access violation (exception 0xC0000005)".
inline std::string describe_status(int status) {
  const auto code = static_cast<DWORD>(status);
  if (code == terminated_base + kill_signal || code == terminated_base + terminate_signal)
    return "was terminated (TerminateProcess)";
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08lX", static_cast<unsigned long>(code));
  if (const char* name = exception_name(code))
    return std::string("crashed with ") + name + " (exception " + hex + ")";
  if ((code & 0xF0000000u) == 0xC0000000u) return std::string("crashed with exception ") + hex;
  return "exited with code " + std::to_string(code);
}

/// Waits for child `pid`; returns its exit code. `block` false: returns -1 while it runs.
inline int wait_for(pid_type pid, bool block) {
  HANDLE h = children::find(pid);
  if (h == nullptr)
    throw parallel::error("parallel: no child process with pid " + std::to_string(pid));
  const DWORD waited = ::WaitForSingleObject(h, block ? INFINITE : 0);
  if (waited == WAIT_TIMEOUT) return -1;
  if (waited != WAIT_OBJECT_0) throw_last_error("WaitForSingleObject(child process)");
  DWORD code = 0;
  if (!::GetExitCodeProcess(h, &code)) throw_last_error("GetExitCodeProcess");
  children::forget(pid);
  return static_cast<int>(code);
}

/// Waits at most `timeout` for `pid`; its exit code, or -1 when it still runs then.
inline int wait_at_most(pid_type pid, std::chrono::milliseconds timeout) {
  HANDLE h = children::find(pid);
  if (h == nullptr)
    throw parallel::error("parallel: no child process with pid " + std::to_string(pid));
  const auto ms = std::clamp<std::chrono::milliseconds::rep>(timeout.count(), 0, INFINITE - 1);
  if (::WaitForSingleObject(h, static_cast<DWORD>(ms)) == WAIT_TIMEOUT) return -1;
  return wait_for(pid, true);
}

/// Monotonic nanoseconds, comparable between processes of one machine (QueryPerformanceCounter).
inline std::uint64_t monotonic_ns() noexcept {
  static const std::uint64_t frequency = [] {
    LARGE_INTEGER f;
    ::QueryPerformanceFrequency(&f);
    return static_cast<std::uint64_t>(f.QuadPart);
  }();
  LARGE_INTEGER now;
  ::QueryPerformanceCounter(&now);
  const auto ticks = static_cast<std::uint64_t>(now.QuadPart);
  return ticks / frequency * 1000000000u + ticks % frequency * 1000000000u / frequency;
}

inline pid_type current_pid() noexcept { return static_cast<pid_type>(::GetCurrentProcessId()); }

[[noreturn]] inline void exit_now(int code) noexcept {
  std::fflush(nullptr);
  ::TerminateProcess(::GetCurrentProcess(), static_cast<UINT>(code));
  ::ExitProcess(static_cast<UINT>(code));  // not reached
}

/// A crash in a worker ends it at once with the exception's code as exit code (which the caller
/// reports as worker_died), instead of a crash dialog or a debugger that would keep it alive.
inline LONG WINAPI end_on_crash(EXCEPTION_POINTERS* info) {
  ::TerminateProcess(::GetCurrentProcess(), info->ExceptionRecord->ExceptionCode);
  return EXCEPTION_EXECUTE_HANDLER;
}

/// What a new worker does first. It dies with its caller through the job object it was put in
/// (spawn.hpp), so there is nothing to arrange for that here.
inline void become_worker(pid_type) noexcept {
  ::SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX | SEM_NOOPENFILEERRORBOX);
  ::SetUnhandledExceptionFilter(&end_on_crash);
}

/// Writes all of `size` bytes to a blocking pipe handle. False when the peer is gone.
inline bool write_all(HANDLE h, const void* data, std::size_t size) noexcept {
  const auto* at = static_cast<const char*>(data);
  while (size > 0) {
    DWORD written = 0;
    const auto chunk = static_cast<DWORD>(std::min<std::size_t>(size, std::size_t{1} << 30));
    if (!::WriteFile(h, at, chunk, &written, nullptr)) return false;
    at += written;
    size -= written;
  }
  return true;
}

/// One blocking read: bytes read, 0 at end of stream, -1 on error. (The caller's side reads
/// through channel.hpp; only a worker reads this way.)
inline std::ptrdiff_t read_some(HANDLE h, void* data, std::size_t size, bool) noexcept {
  DWORD got = 0;
  const auto chunk = static_cast<DWORD>(std::min<std::size_t>(size, std::size_t{1} << 30));
  if (::ReadFile(h, data, chunk, &got, nullptr)) return got;
  const DWORD err = ::GetLastError();
  return err == ERROR_BROKEN_PIPE || err == ERROR_NO_DATA ? 0 : -1;
}

/// An anonymous pipe (read end, write end) whose buffer holds at least `bytes`: writing that
/// much never waits for the reader. Neither end is inheritable.
inline std::pair<owned_handle, owned_handle> pipe_with_room(std::size_t bytes) {
  HANDLE read = nullptr;
  HANDLE write = nullptr;
  const auto room = static_cast<DWORD>(std::min<std::size_t>(bytes + 4096, DWORD{1} << 30));
  if (!::CreatePipe(&read, &write, nullptr, room)) throw_last_error("CreatePipe");
  return {owned_handle(read), owned_handle(write)};
}

/// Anonymous shared memory of `bytes` bytes, backed by the paging file, named nowhere.
inline owned_handle anonymous_memory(std::size_t bytes) {
  const auto size = static_cast<std::uint64_t>(bytes);
  owned_handle section(::CreateFileMappingW(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE,
                                            static_cast<DWORD>(size >> 32),
                                            static_cast<DWORD>(size & 0xFFFFFFFFu), nullptr));
  if (!section) throw_last_error("CreateFileMapping(shared arena)");
  return section;
}

/// Windows sets no limit on a process's address space (RLIMIT_AS): 0.
inline std::size_t address_space_limit() noexcept { return 0; }

/// Why a worker's shared memory could not be mapped at all, and what to do.
inline std::string address_space_advice() {
  return "parallel: cannot map a worker's shared arena, not even its control page: this "
         "process is out of address space or commit charge; free memory or start fewer workers";
}

/// A view of a section, unmapped on destruction.
class shared_mapping {
 public:
  shared_mapping() noexcept = default;
  shared_mapping(HANDLE section, std::size_t bytes) : shared_mapping(section, bytes, std::nothrow) {
    if (data_ == nullptr) throw_last_error("MapViewOfFile(shared arena)");
  }
  /// Empty (data() == nullptr) when the view cannot be mapped.
  shared_mapping(HANDLE section, std::size_t bytes, std::nothrow_t) noexcept {
    void* at = ::MapViewOfFile(section, FILE_MAP_ALL_ACCESS, 0, 0, bytes);
    if (at == nullptr) return;
    data_ = static_cast<std::byte*>(at);
    size_ = bytes;
  }
  shared_mapping(shared_mapping&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  shared_mapping& operator=(shared_mapping&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  shared_mapping(const shared_mapping&) = delete;
  shared_mapping& operator=(const shared_mapping&) = delete;
  ~shared_mapping() { reset(); }
  void reset() noexcept {
    if (data_ != nullptr) ::UnmapViewOfFile(data_);
    data_ = nullptr;
    size_ = 0;
  }
  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

/// The handle that names an arena's memory (arena.hpp): the section.
using memory_handle = owned_handle;
inline memory_handle adopt_memory(native_handle h) noexcept { return owned_handle(h); }

/// True when `address` lies in committed memory of this process (code, data, heap, stacks).
inline bool is_mapped_address(std::uintptr_t address) noexcept {
  if (address < 0x10000) return false;
  MEMORY_BASIC_INFORMATION info{};
  if (::VirtualQuery(reinterpret_cast<const void*>(address), &info, sizeof info) == 0) return false;
  return info.State == MEM_COMMIT;
}

/// A wake-up another thread can signal: a manual-reset event, set until drained.
class wakeup {
 public:
  wakeup() : event_(::CreateEventW(nullptr, TRUE, FALSE, nullptr)) {
    if (!event_) throw_last_error("CreateEvent");
  }
  HANDLE event() const noexcept { return event_.get(); }
  void signal() noexcept { ::SetEvent(event_.get()); }
  void drain() noexcept { ::ResetEvent(event_.get()); }

 private:
  owned_handle event_;
};

/// UTF-16 <-> UTF-8, for paths and the command line.
inline std::string narrow(const std::wstring& wide) {
  if (wide.empty()) return {};
  const int n = ::WideCharToMultiByte(CP_UTF8, 0, wide.data(), static_cast<int>(wide.size()),
                                      nullptr, 0, nullptr, nullptr);
  std::string out(static_cast<std::size_t>(n), '\0');
  ::WideCharToMultiByte(CP_UTF8, 0, wide.data(), static_cast<int>(wide.size()), out.data(), n,
                        nullptr, nullptr);
  return out;
}

inline std::wstring widen(const std::string& text) {
  if (text.empty()) return {};
  const int n =
      ::MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), nullptr, 0);
  std::wstring out(static_cast<std::size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), out.data(), n);
  return out;
}

/// The path of a loaded module (nullptr: the executable).
inline std::wstring module_path(HMODULE module) {
  std::wstring path(MAX_PATH, L'\0');
  for (;;) {
    const DWORD n = ::GetModuleFileNameW(module, path.data(), static_cast<DWORD>(path.size()));
    if (n == 0) throw_last_error("GetModuleFileName");
    if (n < path.size()) {
      path.resize(n);
      return path;
    }
    path.resize(path.size() * 2);
  }
}

}  // namespace parallel::detail::os
