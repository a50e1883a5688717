// The library's error types. Every failure the library reports derives from parallel::error.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace parallel {

/// Base of every error the library raises itself (a task's own exception on threads keeps its
/// type and is not wrapped).
///
///     try { parallel::map(parallel::processes<>{}, f, xs); }
///     catch (const parallel::error& e) { std::cerr << e.what() << '\n'; }
class error : public std::runtime_error {
 public:
  explicit error(const std::string& message) : std::runtime_error(message) {}
  explicit error(const char* message) : std::runtime_error(message) {}
};

/// A task threw in another process. Carries the demangled type name of the exception, its
/// what() and the index of the item that raised it.
///
///     catch (const parallel::remote_error& e) { std::cerr << e.type_name() << " at " << e.index();
///     }
class remote_error : public error {
 public:
  static constexpr std::size_t no_index = std::numeric_limits<std::size_t>::max();

  explicit remote_error(const std::string& message, std::string type_name = {},
                        std::size_t index = no_index)
      : error(message), type_name_(std::move(type_name)), index_(index) {}

  /// The demangled type of the exception thrown by the task ("std::out_of_range").
  const std::string& type_name() const noexcept { return type_name_; }
  /// The position of the item in the input, or no_index when the failure is not tied to one.
  std::size_t index() const noexcept { return index_; }

 private:
  std::string type_name_;
  std::size_t index_;
};

/// A worker process ended while it was running a task (killed by a signal, or exited).
///
///     catch (const parallel::worker_died& e) { std::cerr << e.what(); /* pool already replaced it
///     */ }
class worker_died : public error {
 public:
  using error::error;
};

/// A task ran longer than options.timeout; its worker was stopped and replaced.
///
///     parallel::map(parallel::processes<>{}, f, xs, {.timeout = std::chrono::seconds(5)});
class timeout_error : public error {
 public:
  using error::error;
};

/// A child process could not be started or did not complete its handshake.
///
///     int main(int argc, char** argv) { parallel::spawn_main(argc, argv); ... }
class spawn_error : public error {
 public:
  using error::error;
};

/// future::get() of a task that was cancelled (future::cancel) before it started: it never ran
/// (Python's concurrent.futures.CancelledError).
///
///     if (fut.cancel()) { /* fut.get() now throws parallel::cancelled_error */ }
class cancelled_error : public error {
 public:
  using error::error;
};

}  // namespace parallel
