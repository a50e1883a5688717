// What several test files share: a watchdog that turns a deadlock into a failing test that says
// where every thread stood, whether ThreadSanitizer is on (it cannot follow threads started in a
// child of fork()), a generator-like input range, a result type without a default constructor,
// the policies every verb is checked under, and how a test tells "at once" without a fixed
// wall-clock bound.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <parallel/parallel.hpp>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/syscall.h>
#endif
#if !defined(_WIN32)
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace test_support {

using namespace std::chrono_literals;

#if !defined(_WIN32)
/// The test program's standard error as it was at start, kept on a descriptor of its own: a
/// test that redirects fd 2 into a file still gets the watchdog's report on the real stderr.
inline int report_fd() {
  static const int fd = [] {
    const int copy = ::fcntl(2, F_DUPFD_CLOEXEC, 64);
    return copy < 0 ? 2 : copy;
  }();
  return fd;
}
inline const int report_fd_at_start = report_fd();

/// Writes where this process and its child processes stand: each one's state and kernel wait
/// channel, and every thread's stack (gdb, when installed). A hang in CI then says where.
inline void report_hang() {
  std::vector<long> pids{static_cast<long>(::getpid())};
  if (DIR* tasks = ::opendir("/proc/self/task")) {
    while (const dirent* entry = ::readdir(tasks)) {
      if (entry->d_name[0] == '.') continue;
      const std::string path = std::string("/proc/self/task/") + entry->d_name + "/children";
      if (FILE* file = std::fopen(path.c_str(), "r")) {
        long pid = 0;
        while (std::fscanf(file, "%ld", &pid) == 1) pids.push_back(pid);
        std::fclose(file);
      }
    }
    ::closedir(tasks);
  }
  for (const long pid : pids) {
    const std::string id = std::to_string(pid);
    const std::string command =
        "echo '--- process " + id + (pid == pids.front() ? " (the test)" : " (its child)") +
        ": state, wait channel, stacks'; cut -d' ' -f1-3 /proc/" + id + "/stat; cat /proc/" + id +
        "/wchan; echo; timeout 60 gdb -p " + id +
        " -batch -nx -ex 'thread apply all bt' 2>&1 | grep -e '^#' -e '^Thread'";
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, report_fd(), 1);
    ::posix_spawn_file_actions_adddup2(&actions, report_fd(), 2);
    char sh[] = "/bin/sh";
    char dash_c[] = "-c";
    std::string text = command;
    char* argv[] = {sh, dash_c, text.data(), nullptr};
    ::pid_t child = -1;
    if (::posix_spawn(&child, sh, &actions, nullptr, argv, environ) == 0) {
      int status = 0;
      ::waitpid(child, &status, 0);
    }
    ::posix_spawn_file_actions_destroy(&actions);
  }
}
#endif

/// Aborts the test program with a message if the enclosing scope has not ended in time:
/// a deadlock fails loudly instead of hanging ctest, and says where each thread of the test
/// and of its worker processes stood (report_hang).
class watchdog {
 public:
  explicit watchdog(std::string what, std::chrono::seconds limit = 20s)
      : thread_{[this, what = std::move(what), limit] {
          std::unique_lock lock{mutex_};
          started_ = true;
          started_cv_.notify_one();
          if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
            const std::string message = "watchdog: '" + what + "' did not finish within " +
                                        std::to_string(limit.count()) + " s (deadlock?)\n";
#if !defined(_WIN32)
            (void)::write(report_fd(), message.data(), message.size());
            report_hang();
#else
            std::fputs(message.c_str(), stderr);
#endif
            std::abort();
          }
        }} {
    // The test forks next: wait until this thread sleeps. A thread still starting up may hold
    // the sanitizers' allocator lock, and a child forked then deadlocks on it (neither GCC 12's
    // TSan nor Clang 16's ASan runtime takes that lock around fork()).
    std::unique_lock lock{mutex_};
    started_cv_.wait(lock, [this] { return started_; });
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() {
    {
      std::lock_guard lock{mutex_};
      done_ = true;
    }
    done_cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  std::condition_variable started_cv_;
  bool started_ = false;
  bool done_ = false;
  std::thread thread_;
};

// --- how long is too long ---------------------------------------------------------------------
//
// No test asserts a fixed wall-clock bound: the same test runs as a release build on an idle
// machine and as an -O0 ASan build on a loaded 2-core one, where a spawned worker takes a second
// to start instead of 10 ms. A test that must show that something happens "at once"
// compares it with a healthy call of the same shape timed in the same run (same runner, start
// method, items and options): at most slow_factor times as long, and never less than floor_ms
// (at_once_bound). One that must show that something does not wait for X either makes X take
// tens of seconds or checks that X has not happened yet. A hang is left to the watchdog. The
// latency itself is reported (INFO; WARN above the library's target), and the benchmarks
// measure it.

inline constexpr double slow_factor = 10;
inline constexpr double floor_ms = 2000;

/// Milliseconds since `start` on the steady clock.
inline double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

/// How long call() takes, in milliseconds.
template <class Call>
double time_ms(Call&& call) {
  const auto start = std::chrono::steady_clock::now();
  std::forward<Call>(call)();
  return ms_since(start);
}

/// The most a call may take that must end "at once", given the time of a healthy call of the
/// same shape in this run; `plus_ms` is what the call must take by design (a timeout it waits
/// out).
inline double at_once_bound(double healthy_ms, double plus_ms = 0) {
  return plus_ms + std::max(floor_ms, slow_factor * healthy_ms);
}

/// Reports how long `what` took, WARNs above `target_ms` (the library's aim; 0: none), and
/// checks it against at_once_bound(healthy_ms, plus_ms).
inline void check_at_once(const std::string& what, double took_ms, double healthy_ms,
                          double plus_ms = 0, double target_ms = 0) {
  const double bound = at_once_bound(healthy_ms, plus_ms);
  INFO(what << " after " << took_ms << " ms; a healthy call of the same shape took " << healthy_ms
            << " ms, so the bound is " << bound << " ms");
  if (target_ms > 0 && took_ms > target_ms)
    WARN(what << " after " << took_ms << " ms (target " << target_ms << " ms)");
  CHECK(took_ms < bound);
}

constexpr bool under_thread_sanitizer =
#if defined(__SANITIZE_THREAD__)
    true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

constexpr bool under_address_sanitizer =
#if defined(__SANITIZE_ADDRESS__)
    true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

/// A sanitizer's runtime is in this program: processes start slower, memory figures are its.
constexpr bool under_sanitizer = under_thread_sanitizer || under_address_sanitizer;

#if defined(__linux__)
/// The page faults the calling thread traps from its construction on: perf's software event,
/// which counts a fault an instruction takes, not a page the kernel maps in when asked to
/// (MADV_POPULATE_WRITE), which getrusage counts too. available() is false where perf events
/// are refused (perf_event_paranoid, a seccomp filter).
class trapped_page_faults {
 public:
  trapped_page_faults() {
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_PAGE_FAULTS;
    fd_ = static_cast<int>(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
  }
  trapped_page_faults(const trapped_page_faults&) = delete;
  trapped_page_faults& operator=(const trapped_page_faults&) = delete;
  ~trapped_page_faults() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool available() const { return fd_ >= 0; }
  long count() const {
    std::uint64_t n = 0;
    if (fd_ < 0 || ::read(fd_, &n, sizeof n) != static_cast<ssize_t>(sizeof n)) return -1;
    return static_cast<long>(n);
  }

 private:
  int fd_ = -1;
};
#endif

#if !defined(_WIN32)
/// fork() for a test whose pools by size were just used: first waits (up to 5 s) until each
/// of their threads has started and sleeps. A thread still starting, or still finishing a
/// call, may hold an allocator lock of a sanitizer's runtime at the fork, which the child then
/// inherits locked (seen with Clang 16's ASan: the child's new threads wait on it forever).
inline pid_t fork_when_pools_sleep() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!parallel::detail::default_pools::asleep() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::fflush(nullptr);
  return ::fork();
}
#endif

/// A single-pass input range of 0, 1, 2, ... (forever when size < 0), as a generator is: no
/// size, no second pass, and copies of an iterator share the position. It counts the items read
/// (reads(); atomic, as the library may read it from any thread) and how far it was advanced
/// (position()). Given a log, it logs "P<k>" when it produces item k (begin() produces item 0,
/// ++ the next), so that a consumer logging "C<k>" into the same log shows how far ahead the
/// input ran; item `broken` then throws std::runtime_error("the input broke at item <k>") when
/// it is read.
class single_pass {
 public:
  explicit single_pass(int size = -1) : size_{size} {}
  single_pass(std::vector<std::string>& log, int size, int broken = -1)
      : size_{size}, log_{&log}, broken_{broken} {}

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(single_pass* owner) : owner_{owner} {}
    int operator*() const {
      const int at = owner_->current_;
      if (at == owner_->broken_)
        throw std::runtime_error("the input broke at item " + std::to_string(at));
      owner_->reads_.store(std::max(owner_->reads_.load(), at + 1));
      return at;
    }
    iterator& operator++() {
      owner_->produce(++owner_->current_);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    bool at_end() const { return owner_->size_ >= 0 && owner_->current_ >= owner_->size_; }
    single_pass* owner_ = nullptr;
  };

  iterator begin() {
    produce(current_);
    return iterator{this};
  }
  std::default_sentinel_t end() const noexcept { return {}; }
  /// Items dereferenced so far (the highest position read, plus one).
  int reads() const { return reads_.load(); }
  /// How far the input was advanced.
  int position() const { return current_; }

 private:
  void produce(int k) {
    if (log_ != nullptr && (size_ < 0 || k < size_)) log_->push_back("P" + std::to_string(k));
  }

  int size_;
  int current_ = 0;
  std::atomic<int> reads_{0};
  std::vector<std::string>* log_ = nullptr;
  int broken_ = -1;
};
static_assert(std::ranges::input_range<single_pass>);
static_assert(!std::ranges::forward_range<single_pass>);
static_assert(!std::ranges::sized_range<single_pass>);

struct no_default {
  explicit no_default(int v) : value{v} {}
  int value;
};
static_assert(!std::is_default_constructible_v<no_default>);

/// "P0 C0 P1 C1 ... P<n-1> C<n-1>": what a generator and its consumer log when the input runs no
/// further ahead than one item (max_in_flight = 1).
inline std::vector<std::string> lockstep_log(int n) {
  std::vector<std::string> out;
  for (int k = 0; k < n; ++k) {
    out.push_back("P" + std::to_string(k));
    out.push_back("C" + std::to_string(k));
  }
  return out;
}

/// imap (ordered_tag true_type) or imap_unordered (false_type) of f on a policy, as one callable
/// the single-pass checks below take: imap_of(std::true_type{}, input, options).
template <class Policy, class F>
auto imap_on(Policy policy, F f) {
  return [policy, f](auto ordered_tag, auto&& input, const parallel::options& o) {
    if constexpr (decltype(ordered_tag)::value)
      return parallel::imap(policy, f, std::forward<decltype(input)>(input), o);
    else
      return parallel::imap_unordered(policy, f, std::forward<decltype(input)>(input), o);
  };
}

/// The same for a pool's members (thread_pool, process_pool).
template <class Pool, class F>
auto imap_on_pool(Pool& pool, F f) {
  return [&pool, f](auto ordered_tag, auto&& input, const parallel::options& o) {
    if constexpr (decltype(ordered_tag)::value)
      return pool.imap(f, std::forward<decltype(input)>(input), o);
    else
      return pool.imap_unordered(f, std::forward<decltype(input)>(input), o);
  };
}

/// imap_of(ordered, input, opts) for ordered = true and false; `consume` takes the range.
template <class ImapOf, class Input, class Consume>
void run_imap(ImapOf& imap_of, bool ordered, Input&& input, const parallel::options& o,
              Consume consume) {
  if (ordered)
    consume(imap_of(std::true_type{}, std::forward<Input>(input), o));
  else
    consume(imap_of(std::false_type{}, std::forward<Input>(input), o));
}

/// At max_in_flight = 1 a generator input and its consumer take turns: P0 C0 P1 C1 ... (joblib,
/// Python). `index_of(result)` gives the item a result came from.
template <class ImapOf, class IndexOf>
void check_lockstep(ImapOf imap_of, IndexOf index_of) {
  for (const bool ordered : {true, false}) {
    CAPTURE(ordered);
    std::vector<std::string> log;
    single_pass input(log, 6);
    run_imap(imap_of, ordered, input, {.max_in_flight = 1}, [&](auto&& results) {
      for (int y : results) log.push_back("C" + std::to_string(index_of(y)));
    });
    REQUIRE(log == lockstep_log(6));
  }
}

/// An input that throws at item 25 of 40: the results of items 0 .. 24 come first (f(i), in
/// some order for imap_unordered), then the input's exception (CPython's
/// test_imap_handle_iterable_exception).
template <class ImapOf, class F>
void check_input_breaks(ImapOf imap_of, F f) {
  constexpr int broken = 25;
  for (const bool ordered : {true, false}) {
    for (std::size_t chunksize : {std::size_t{0}, std::size_t{1}, std::size_t{4}}) {
      CAPTURE(ordered, chunksize);
      std::vector<std::string> log;
      single_pass input(log, 40, broken);
      std::vector<int> got;
      REQUIRE_THROWS_WITH(run_imap(imap_of, ordered, input, {.chunksize = chunksize},
                                   [&got](auto&& results) {
                                     for (int y : results) got.push_back(y);
                                   }),
                          "the input broke at item 25");
      std::sort(got.begin(), got.end());
      std::vector<int> expected;
      for (int i = 0; i < broken; ++i) expected.push_back(f(i));
      std::sort(expected.begin(), expected.end());
      REQUIRE(got == expected);
    }
  }
}

/// std::views::istream over "1 2 3 4 5 6" (a move-only iterator, read once): f(1) .. f(6), in
/// order for imap, in some order for imap_unordered.
template <class ImapOf, class F>
void check_istream(ImapOf imap_of, F f) {
  static_assert(!std::copyable<std::ranges::iterator_t<std::ranges::istream_view<int>>>);
  std::vector<int> expected;
  for (int i = 1; i <= 6; ++i) expected.push_back(f(i));
  for (const bool ordered : {true, false}) {
    CAPTURE(ordered);
    std::istringstream text("1 2 3 4 5 6");
    std::vector<int> got;
    run_imap(imap_of, ordered, std::views::istream<int>(text), {}, [&got](auto&& results) {
      for (int y : results) got.push_back(y);
    });
    if (!ordered) std::sort(got.begin(), got.end());
    REQUIRE(got == expected);
  }
}

/// Runs check(policy) for the sequential loop and for thread pools of several sizes.
template <class Check>
void for_each_policy(Check check) {
  {
    INFO("policy: sequential");
    check(parallel::sequential{});
  }
  {
    INFO("policy: threads{}");
    check(parallel::threads{});
  }
  {
    INFO("policy: threads{.workers = 1}");
    check(parallel::threads{.workers = 1});
  }
  {
    INFO("policy: threads{.workers = 3}");
    check(parallel::threads{.workers = 3});
  }
}

}  // namespace test_support
