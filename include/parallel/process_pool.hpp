// parallel::process_pool<Start>: worker processes kept for reuse across calls (Python's Pool /
// ProcessPoolExecutor), with map, starmap, imap, imap_unordered and submit. Each task ships its
// function (as a code location, the same in every process of this executable), the function's
// captures and its arguments; results come back through the codec.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <chrono>
#include <cstddef>
#include <memory>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "codec.hpp"
#include "detail/algorithms/pool_verbs.hpp"
#include "detail/algorithms/process_backends.hpp"
#include "detail/algorithms/void_results.hpp"
#include "detail/ipc/hooks.hpp"
#include "detail/process_platform.hpp"
#include "detail/start/spawn.hpp"
#include "future.hpp"
#include "policy.hpp"

namespace parallel {

namespace detail {
struct hook_access;
}

/// A call each worker process of a pool makes: a function and the arguments to call it with
/// (Python's initializer and initargs). Like a task's function, it crosses to the workers, on
/// every start method: a function, a lambda without captures, or one capturing numbers by value;
/// its arguments cross through parallel::codec.
///
///     parallel::process_pool<> pool{{.initializer = {open_db, std::string("/tmp/cache.db"), 4},
///                                    .on_exit = close_db}};
class worker_hook {
 public:
  /// No call.
  worker_hook() = default;
  worker_hook(std::nullptr_t) noexcept {}  // NOLINT: `.initializer = nullptr` as before

  /// fn(args...) in each worker. The arguments are copied now; a C string crosses as its
  /// characters.
  template <class F, class... Args>
  requires(!std::is_same_v<std::decay_t<F>, worker_hook> &&
           !std::is_same_v<std::decay_t<F>, std::nullptr_t>)
      worker_hook(F fn, Args&&... args) {  // NOLINT: `.initializer = init` converts
    using Tuple = std::tuple<detail::shipped_arg_t<Args>...>;
    constexpr bool callable = std::is_invocable_v<F&, detail::shipped_arg_t<Args>&...>;
    static_assert(callable,
                  "parallel::worker_hook: the function cannot be called with these arguments "
                  "(the hook calls fn(args...) in each worker)");
    if constexpr (callable) {  // (nothing more to say about one that cannot be called)
      detail::require_transferable<Tuple>();
      if constexpr (std::is_pointer_v<F>) {
        if (fn == nullptr) return;  // a null function pointer: no call, as nullptr
      }
      call_ = detail::ipc::encode_hook(fn, Tuple(std::forward<Args>(args)...));
    }
  }

  /// True when there is a call to make.
  explicit operator bool() const noexcept { return !call_.empty(); }

 private:
  friend struct detail::hook_access;
  std::vector<std::byte> call_;
};

/// Options of a process_pool.
///
///     parallel::process_pool<> pool{{.workers = 4, .max_tasks_per_child = 100, .initializer =
///     init}};
struct pool_options {
  /// 0 = all cores, n > 0 = n, n < 0 = all cores but |n| (at least 1).
  int workers = 0;
  /// A worker is replaced by a fresh one after this many tasks (chunks); 0 = never.
  std::size_t max_tasks_per_child = 0;
  /// Runs once in each worker before its first task: `init`, or `{init, args...}` for
  /// init(args...) (Python's initializer and initargs). If it throws, the pool's calls fail
  /// with parallel::spawn_error naming the exception.
  worker_hook initializer{};
  /// A worker whose initializer has not returned within this time is stopped, and the calls
  /// waiting for it fail with parallel::spawn_error; a call with options.timeout waits for a
  /// worker no longer than that timeout. 0 = no limit.
  std::chrono::milliseconds start_timeout = detail::default_start_timeout;  // 60 s
  /// Runs once in each worker after its last task: when the worker retires
  /// (max_tasks_per_child) or the pool ends. Not in a worker that dies or is killed (a
  /// timeout, cancel(if_running::kill), a task still running as the pool is destroyed). What
  /// it throws goes to the worker's standard error (the pool may be gone by then).
  worker_hook on_exit{};
  /// How long a worker may take to end, its on_exit included, once the pool has let it go;
  /// then it is killed. Without on_exit a worker gets a second.
  std::chrono::milliseconds on_exit_timeout = detail::default_on_exit_timeout;  // 30 s
};

namespace detail {
struct hook_access {
  /// The options as the pool's core takes them: each hook as the bytes that cross.
  static pool_config config(const pool_options& opts) {
    return {.workers = opts.workers,
            .max_tasks_per_child = opts.max_tasks_per_child,
            .initializer = opts.initializer.call_,
            .start_timeout = opts.start_timeout,
            .on_exit = opts.on_exit.call_,
            .on_exit_timeout = opts.on_exit_timeout};
  }
};
}  // namespace detail

/// Worker processes for reuse across calls (Python's Pool / ProcessPoolExecutor). Workers start
/// with the pool and stay until it is destroyed; a worker that dies is replaced, and only the
/// task it was running fails (parallel::worker_died).
///
///     parallel::process_pool<> pool{{.workers = 4}};
///     std::vector<int> squares = pool.map(square, xs);
///     parallel::future<double> r = pool.submit(slow_pow, 3, 2);
///
/// f crosses to the workers: a function, a lambda without captures, or a lambda capturing
/// numbers by value (its bytes are copied). Items, arguments and results cross through
/// parallel::codec. A pool built before a lambda was written still runs it: the lambda's code
/// is in the executable the workers run.
template <class Start = start::platform_default>
class process_pool {
  static_assert(std::is_same_v<Start, start::fork> || std::is_same_v<Start, start::spawn> ||
                    std::is_same_v<Start, start::forkserver>,
                "parallel::process_pool: Start must be start::fork, start::spawn or "
                "start::forkserver");
  static_assert(detail::start_available<Start>,
                "parallel::process_pool<Start>: this platform has no fork(), so start::fork and "
                "start::forkserver are POSIX only; on Windows use parallel::process_pool<> (which "
                "is start::spawn there) and make parallel::spawn_main(argc, argv) the first "
                "statement of main");

 public:
  using options_type = pool_options;

  explicit process_pool(const pool_options& opts = {})
      : core_(std::make_unique<detail::process_pool_core>(detail::hook_access::config(opts),
                                                          detail::start_method<Start>::plan())) {}

  process_pool(process_pool&&) noexcept = default;
  process_pool& operator=(process_pool&&) noexcept = default;
  /// Finishes the tasks already submitted, then ends the workers.
  ~process_pool() = default;

  /// Number of worker processes.
  std::size_t size() const noexcept { return core_->size(); }

  /// f returning void: map and starmap return void, imap and imap_unordered a range that yields
  /// nothing and runs every item when the loop over it starts.
  template <class F, std::ranges::input_range Range>
  auto map(F&& f, Range&& items, const options& opts = {}) {
    detail::pool_runner run(*core_);
    return detail::map_outcome([&] { return detail::pool_map<false>(run, f, items, opts); });
  }

  template <class F, std::ranges::input_range Range>
  auto starmap(F&& f, Range&& items, const options& opts = {}) {
    detail::pool_runner run(*core_);
    return detail::map_outcome([&] { return detail::pool_map<true>(run, f, items, opts); });
  }

  template <class F, std::ranges::input_range Range>
  auto imap(F&& f, Range&& items, const options& opts = {}) {
    return detail::imap_outcome(
        detail::pool_imap<true, false>(std::make_unique<detail::pool_runner>(*core_),
                                       std::forward<F>(f), std::forward<Range>(items), opts));
  }

  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F&& f, Range&& items, const options& opts = {}) {
    return detail::imap_outcome(
        detail::pool_imap<false, false>(std::make_unique<detail::pool_runner>(*core_),
                                        std::forward<F>(f), std::forward<Range>(items), opts));
  }

  /// Runs f(args...) in a worker (Python's apply_async / executor.submit). If that worker dies,
  /// only this future fails (parallel::worker_died); the others complete. A void f gives a
  /// future<void>. future::cancel() takes the task back until a worker starts it;
  /// cancel(parallel::if_running::kill) also stops it while it runs (its worker is killed and
  /// replaced).
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    detail::pool_runner run(*core_);
    return detail::pool_submit(run, std::forward<F>(f), std::forward<Args>(args)...);
  }

 private:
  std::unique_ptr<detail::process_pool_core> core_;
};

/// The first statement of main in a program that uses start::spawn (the twin of Python's
/// `if __name__ == '__main__':` guard and freeze_support()). A spawned worker runs this
/// executable again: in it, spawn_main turns the process into a worker and never returns; in a
/// normal run it returns at once.
///
///     int main(int argc, char** argv) {
///       parallel::spawn_main(argc, argv);
///       ...
///     }
inline void spawn_main(int argc, char** argv) {
  static_cast<void>(argc);
  static_cast<void>(argv);
  if (const char* marker = detail::os::worker_marker_value()) detail::run_spawned_worker(marker);
}

}  // namespace parallel
