// What every operating-system layer (linux/ over posix/, posix/ alone, win32/) gives the rest of
// the library, checked at compile time: the names of parallel::detail::os that code outside the
// os folders calls, with the types each must have. A layer that lacks one, or gives it another
// type, fails here with the name. README.md in this folder says what each one does. The test
// programs include this header (tests/main.cpp, on Linux and under mingw), and
// ./scripts/check-layers --headers compiles it with each compiler it has.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <string>
#include <type_traits>

#include "module_span.hpp"
#include "platform.hpp"
#include "process_platform.hpp"

// The type a function of the layer must have (its address, so no overload may hide it).
#define PARALLEL_DETAIL_OS_FUNCTION(name, ...)                                        \
  static_assert(std::is_same_v<decltype(&::parallel::detail::os::name), __VA_ARGS__>, \
                "the operating-system layer's os::" #name                             \
                " does not have the contract's type (detail/os_contract.hpp)")

namespace parallel::detail::os_contract {

// --- The thread backend's layer: detail/platform.hpp ---------------------------------------------

static_assert(std::is_same_v<decltype(os::has_fork), const bool>);
static_assert(PARALLEL_DETAIL_HAS_FORK == (os::has_fork ? 1 : 0),
              "PARALLEL_DETAIL_HAS_FORK (for #if) and os::has_fork must agree");
PARALLEL_DETAIL_OS_FUNCTION(available_cores, std::size_t (*)() noexcept);
PARALLEL_DETAIL_OS_FUNCTION(whole_huge_pages_request, std::size_t (*)(std::size_t) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(prepare_large_write, void (*)(void*, std::size_t) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(populate_for_write, void (*)(void*, std::size_t) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(give_back_shared, void (*)(void*, std::size_t) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(stderr_is_terminal, bool (*)() noexcept);
PARALLEL_DETAIL_OS_FUNCTION(stderr_columns, std::size_t (*)() noexcept);
PARALLEL_DETAIL_OS_FUNCTION(on_fork, void (*)(void (*)(), void (*)(), void (*)()) noexcept);

// --- The process backends' layer: detail/process_platform.hpp ------------------------------------

// Processes: their ids, their end and its status, signals.
static_assert(std::is_signed_v<os::pid_type> && std::is_integral_v<os::pid_type>);
PARALLEL_DETAIL_OS_FUNCTION(current_pid, os::pid_type (*)() noexcept);
PARALLEL_DETAIL_OS_FUNCTION(exit_now, void (*)(int) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(become_worker, void (*)(os::pid_type) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(wait_for, int (*)(os::pid_type, bool));
PARALLEL_DETAIL_OS_FUNCTION(wait_at_most, int (*)(os::pid_type, std::chrono::milliseconds));
PARALLEL_DETAIL_OS_FUNCTION(describe_status, std::string (*)(int));
PARALLEL_DETAIL_OS_FUNCTION(ended_by_signal, bool (*)(int) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(exit_code_of, int (*)(int) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(send_signal, void (*)(os::pid_type, int) noexcept);
static_assert(std::is_same_v<decltype(os::kill_signal), const int>);
static_assert(std::is_same_v<decltype(os::terminate_signal), const int>);
PARALLEL_DETAIL_OS_FUNCTION(watch_process, os::process_watch_handle (*)(os::pid_type) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(signal_process,
                            void (*)(const os::process_watch_handle&, os::pid_type, int) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(ended_within, bool (*)(const os::process_watch_handle&, int) noexcept);
static_assert(std::is_constructible_v<bool, const os::process_watch_handle&>);

// Spawning this executable again as a worker, and the marker that tells it so.
PARALLEL_DETAIL_OS_FUNCTION(spawn_self, os::pid_type (*)(std::initializer_list<os::native_handle>,
                                                         const std::string&));
PARALLEL_DETAIL_OS_FUNCTION(spawned_handle, os::native_handle (*)(int) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(worker_marker_value, const char* (*)() noexcept);
PARALLEL_DETAIL_OS_FUNCTION(clear_worker_marker, void (*)() noexcept);

// Channels to the workers, and the wait over them, their processes and a wake-up.
PARALLEL_DETAIL_OS_FUNCTION(read_some, std::ptrdiff_t (*)(os::native_handle, void*, std::size_t,
                                                          bool) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(write_all,
                            bool (*)(os::native_handle, const void*, std::size_t) noexcept);
static_assert(std::is_nothrow_default_constructible_v<os::channel> &&
              std::is_nothrow_move_constructible_v<os::channel> &&
              !std::is_copy_constructible_v<os::channel>);
static_assert(requires(os::channel & c, const void* from, void* into, std::size_t n) {
  { static_cast<bool>(c) }
  noexcept;
  { c.reset() }
  noexcept;
  { c.write_some(from, n) }
  noexcept->std::same_as<std::ptrdiff_t>;
  { c.read_some(into, n) }
  noexcept->std::same_as<std::ptrdiff_t>;
});
static_assert(requires { os::make_channel().mine; } &&
              std::is_same_v<decltype(os::make_channel().mine), os::channel>);
static_assert(requires(os::wakeup & w) {
  { w.signal() }
  noexcept;
  { w.drain() }
  noexcept;
});
static_assert(requires(os::wait_set & s, const os::channel& c, const os::process_watch_handle& h,
                       const os::wakeup& w, std::size_t k, int timeout_ms) {
  { s.clear() }
  noexcept;
  { s.empty() }
  noexcept->std::same_as<bool>;
  { s.size() }
  noexcept->std::same_as<std::size_t>;
  s.add_channel(c, true);
  s.add_watch(h);
  s.add_wakeup(w);
  { s.wait(timeout_ms) } -> std::same_as<int>;
  { s.readable(k) }
  noexcept->std::same_as<bool>;
  { s.writable(k) }
  noexcept->std::same_as<bool>;
  { s.any(k) }
  noexcept->std::same_as<bool>;
});
PARALLEL_DETAIL_OS_FUNCTION(monotonic_ns, std::uint64_t (*)() noexcept);

// Shared memory: anonymous, mapped by the caller and by its workers.
static_assert(
    std::is_constructible_v<os::memory_handle, decltype(os::anonymous_memory(std::size_t{1}))>);
PARALLEL_DETAIL_OS_FUNCTION(adopt_memory, os::memory_handle (*)(os::native_handle) noexcept);
static_assert(std::is_nothrow_default_constructible_v<os::shared_mapping> &&
              std::is_nothrow_move_constructible_v<os::shared_mapping> &&
              !std::is_copy_constructible_v<os::shared_mapping>);
static_assert(std::is_nothrow_constructible_v<os::shared_mapping, os::native_handle, std::size_t,
                                              std::nothrow_t>);
static_assert(requires(os::shared_mapping & m) {
  { m.reset() }
  noexcept;
  { m.data() }
  noexcept->std::same_as<std::byte*>;
  { m.size() }
  noexcept->std::same_as<std::size_t>;
});
PARALLEL_DETAIL_OS_FUNCTION(address_space_limit, std::size_t (*)() noexcept);
PARALLEL_DETAIL_OS_FUNCTION(address_space_advice, std::string (*)());
PARALLEL_DETAIL_OS_FUNCTION(is_mapped_address, bool (*)(std::uintptr_t) noexcept);

// Which module (executable, shared library) holds a function: task identity (ipc/identity.hpp).
PARALLEL_DETAIL_OS_FUNCTION(module_of, os::module_span (*)(const void*) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(module_loaded, bool (*)(const std::string&) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(address_in_module,
                            const void* (*)(const std::string&, std::uint64_t) noexcept);

// --- Where the system has fork() (start::fork, start::forkserver) --------------------------------

#if PARALLEL_DETAIL_HAS_FORK
PARALLEL_DETAIL_OS_FUNCTION(fork_with_default_handlers, os::pid_type (*)());
PARALLEL_DETAIL_OS_FUNCTION(try_fork, os::pid_type (*)() noexcept);
PARALLEL_DETAIL_OS_FUNCTION(close_descriptor, void (*)(int) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(die_with_parent, void (*)(os::pid_type) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(parent_is, bool (*)(os::pid_type) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(withhold_from_forks, void (*)(void*, std::size_t) noexcept);
PARALLEL_DETAIL_OS_FUNCTION(share_with_forks, void (*)(void*, std::size_t) noexcept);
#endif

}  // namespace parallel::detail::os_contract

#undef PARALLEL_DETAIL_OS_FUNCTION
