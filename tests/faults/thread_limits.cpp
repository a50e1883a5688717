// The thread backend against the system's limits on threads. A pool the system refuses threads
// to fails with std::system_error naming the limit, never std::terminate: thread_pool{8}'s
// constructor and a call on threads{.workers = 8} throw, and the default pool (threads{}, or no
// policy) keeps the threads it got, down to none, with the caller running the work. And the
// pools behind threads{.workers = n} stay bounded in threads whatever sizes a program asks for.
//
// RLIMIT_NPROC counts every task of a user and is not enforced for root, so the limit is set in
// a helper (this program run again) that first becomes an unprivileged user of its own.
#include <dirent.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <parallel/parallel.hpp>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"
#include "helper_process.hpp"

#if !defined(_WIN32)

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;

int square(int x) { return x * x; }

/// Threads of this process.
int own_threads() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/task")) {
    while (const dirent* entry = ::readdir(dir))
      if (entry->d_name[0] != '.') ++count;
    ::closedir(dir);
  }
  return count;
}

/// Waits (at most 5 s) for this process to be back to `threads` threads: a joined thread leaves
/// /proc, and the user's count of tasks, a moment after join() returns.
bool settle_to(int threads) {
  const std::uint64_t start = now_ns();
  while (own_threads() != threads) {
    if (ms_since(start) > 5000) return false;
    sleep_ms(1);
  }
  return true;
}

/// Tasks (threads of every process) whose real uid is `uid`: what RLIMIT_NPROC counts.
int tasks_of_user(uid_t uid) {
  int count = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return -1;
  while (const dirent* p = ::readdir(proc)) {
    if (p->d_name[0] < '0' || p->d_name[0] > '9') continue;
    const std::string tasks_dir = std::string("/proc/") + p->d_name + "/task";
    DIR* tasks = ::opendir(tasks_dir.c_str());
    if (tasks == nullptr) continue;
    while (const dirent* t = ::readdir(tasks)) {
      if (t->d_name[0] == '.') continue;
      std::ifstream status(tasks_dir + "/" + t->d_name + "/status");
      std::string line;
      while (std::getline(status, line))
        if (line.rfind("Uid:", 0) == 0) {
          if (std::strtoul(line.c_str() + 4, nullptr, 10) == uid) ++count;
          break;
        }
    }
    ::closedir(tasks);
  }
  ::closedir(proc);
  return count;
}

/// The helper's report: one line per check on stdout, and whether all passed.
struct report {
  bool failed = false;
  void check(bool ok, const std::string& what) {
    std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
    std::fflush(stdout);
    failed = failed || !ok;
  }
};

/// Runs `call`, which must throw std::system_error for a refused thread; checks the error.
template <class Call>
void expect_refused(report& out, const std::string& what, const std::string& names, Call call) {
  try {
    call();
    out.check(false, what + ": no error");
  } catch (const std::system_error& e) {
    const std::string message = e.what();
    out.check(e.code() == std::errc::resource_unavailable_try_again,
              what + ": std::system_error with EAGAIN (" + message + ")");
    out.check(contains(message, names) && contains(message, "RLIMIT_NPROC") &&
                  contains(message, "fewer workers"),
              what + ": the message names the pool, the limit and what to do");
  } catch (const std::exception& e) {
    out.check(false, what + ": another error: " + e.what());
  }
}

/// The helper, as an unprivileged user of its own under RLIMIT_NPROC.
[[noreturn]] void serve_under_thread_limit() {
  report out;
  // ThreadSanitizer starts a thread of its own with the program's first one: have it start now,
  // so the counts below are the library's.
  const int at_start = own_threads();
  std::thread([] {}).join();
  (void)settle_to(at_start + (test_support::under_thread_sanitizer ? 1 : 0));
  const int baseline = own_threads();
  // A uid nobody else runs as: the count RLIMIT_NPROC compares is then this process's alone.
  // As root, dropping every uid also drops every capability (CAP_SYS_RESOURCE would lift the
  // limit). Not root: the limit applies to this user as it is.
  uid_t uid = ::getuid();
  if (::geteuid() == 0) {
    uid = static_cast<uid_t>(3'000'000 + ::getpid() % 1'000'000);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      std::printf("FAILED: could not become uid %u\n", static_cast<unsigned>(uid));
      std::fflush(stdout);
      ::_exit(1);
    }
  }
  const std::vector<int> xs = numbers(2000);
  const std::vector<int> expected = squares(2000);
  auto limit_new_threads_to = [&](int extra) {
    const int running = tasks_of_user(uid);
    const rlimit limit{static_cast<rlim_t>(running + extra), static_cast<rlim_t>(running + 64)};
    out.check(
        ::setrlimit(RLIMIT_NPROC, &limit) == 0,
        "RLIMIT_NPROC = " + std::to_string(running) + " tasks running + " + std::to_string(extra));
  };

  // Room for 3 threads: pools of 8 are refused, and what they started is joined.
  limit_new_threads_to(3);
  expect_refused(out, "thread_pool{8}", "parallel::thread_pool",
                 [] { parallel::thread_pool pool{8}; });
  out.check(settle_to(baseline), "the 3 threads thread_pool{8} started are gone");
  expect_refused(out, "map(threads{.workers = 8})", "parallel::threads{.workers = 8}",
                 [&] { (void)parallel::map(parallel::threads{.workers = 8}, square, xs); });
  expect_refused(out, "imap(threads{.workers = 8})", "parallel::threads{.workers = 8}", [&] {
    for (int y : parallel::imap(parallel::threads{.workers = 8}, square, xs)) (void)y;
  });
  out.check(settle_to(baseline), "no thread left by the refused calls");
  {
    parallel::thread_pool small{2};
    out.check(small.map(square, xs) == expected, "thread_pool{2} within the limit works");
  }
  out.check(settle_to(baseline), "thread_pool{2} joined its threads");

  // Room for none: the default pool runs every call in the caller, nested ones included.
  limit_new_threads_to(0);
  out.check(parallel::map(square, xs) == expected, "map without a policy, no thread: right");
  out.check(parallel::map(parallel::threads{}, square, xs) == expected,
            "map(threads{}), no thread: right");
  std::vector<int> ordered;
  for (int y : parallel::imap(square, xs)) ordered.push_back(y);
  out.check(ordered == expected, "imap, no thread: right");
  std::vector<int> unordered;
  for (int y : parallel::imap_unordered(square, xs)) unordered.push_back(y);
  std::sort(unordered.begin(), unordered.end());
  out.check(unordered == expected, "imap_unordered, no thread: right");
  auto nested = [](int x) {
    const std::vector<int> inner = parallel::map(square, numbers(x % 7 + 1));
    return std::accumulate(inner.begin(), inner.end(), 0);
  };
  const std::vector<int> nested_expected = parallel::map(parallel::sequential{}, nested, xs);
  out.check(parallel::map(nested, xs) == nested_expected, "nested map, no thread: right");
  out.check(own_threads() == baseline, "no thread was started");

  // Room for one: the default pool keeps the one it got (all it wants on a 1-core machine).
  limit_new_threads_to(1);
  out.check(parallel::map(square, xs) == expected, "map without a policy, one thread: right");
  out.check(parallel::map(nested, xs) == nested_expected, "nested map, one thread: right");
  out.check(own_threads() == baseline + 1, "the default pool runs on the one thread it got");
  ::_exit(out.failed ? 1 : 0);  // not exit(): LeakSanitizer's exit check needs a thread
}

}  // namespace

TEST_CASE("faults helper: pools under RLIMIT_NPROC", "[.fault_nproc]") {
  if (helper_request() == nullptr) return;
  serve_under_thread_limit();
}

TEST_CASE(
    "faults: pools the system refuses threads to throw std::system_error, the default pool "
    "degrades",
    "[faults][threads]") {
  watchdog guard{"faults: RLIMIT_NPROC", 60s};
  const int out = ::memfd_create("faults-nproc", MFD_CLOEXEC);
  REQUIRE(out >= 0);
  const pid_t helper = start_helper({.tag = "[fault_nproc]", .request = "nproc", .stdout_fd = out});
  const int status = wait_helper(helper, 50'000);
  std::string said(4096, '\0');
  const ssize_t got = ::pread(out, said.data(), said.size(), 0);
  said.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
  ::close(out);
  INFO("the helper said:\n" << said);
  REQUIRE(status != -1);             // it ended in time
  CHECK_FALSE(WIFSIGNALED(status));  // std::terminate would be SIGABRT
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK_FALSE(contains(said, "FAILED"));
}

// Every distinct worker count used to keep a pool for the program's life (then one leaked per
// call past 16 sizes): 20 sizes, then 17 and 18 in turn, left 911 threads.
TEST_CASE("faults: threads{.workers = n} keeps a bounded number of threads, whatever the sizes",
          "[faults][threads]") {
  watchdog guard{"faults: pools by size", 60s};
  const std::vector<int> xs = numbers(200);
  const std::vector<int> expected = squares(200);
  const int baseline = own_threads();
  // The cached pools stay within the budget (one larger pool alone may exceed it); the default
  // pool, if this test is the first to use it, adds the cores.
  const auto bound = [&](int largest) {
    const auto budget = static_cast<int>(parallel::detail::default_pools::thread_budget());
    return baseline + std::max(budget, largest) +
           static_cast<int>(parallel::detail::resolve_workers(0));
  };
  auto run = [&](int n) {
    INFO("threads{.workers = " << n << "}");
    REQUIRE(parallel::map(parallel::threads{.workers = n}, square, xs) == expected);
  };
  for (int n = 1; n <= 20; ++n) run(n);
  for (int i = 0; i < 20; ++i) run(17 + i % 2);
  const int after_issue = own_threads();
  CHECK(after_issue <= bound(20));
  // Twice as many sizes, larger ones: the bound does not grow with the number of sizes.
  for (int n = 21; n <= 40; ++n) run(n);
  for (int i = 0; i < 20; ++i) run(37 + i % 2);
  CHECK(own_threads() <= bound(40));
  INFO("threads: " << baseline << " before, " << after_issue
                   << " after 20 sizes, then 17 and 18 in turn");
}

// Calls of many sizes at once, from several threads and nested in each other's tasks: the
// results stay right, and when they are over no pool made for one call is left.
TEST_CASE("faults: concurrent and nested calls of many sizes stay right and bounded",
          "[faults][threads]") {
  watchdog guard{"faults: concurrent pools by size", 60s};
  const int baseline = own_threads();
  const std::vector<int> xs = numbers(64);
  const std::vector<int> expected = squares(64);
  std::atomic<int> wrong{0};
  auto nested = [&](int x) {
    // Sizes past the cache's slots and budget: some calls get a pool of their own.
    const int n = 3 + x % 11;
    if (parallel::map(parallel::threads{.workers = n}, square, xs) != expected) ++wrong;
    return x;
  };
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t)
    callers.emplace_back([&, t] {
      for (int round = 0; round < 4; ++round) {
        const int n = 2 + (t * 5 + round) % 9;
        if (parallel::map(parallel::threads{.workers = n}, nested, numbers(12)) != numbers(12))
          ++wrong;
        std::vector<int> got;
        for (int y : parallel::imap(parallel::threads{.workers = n + 20}, square, xs))
          got.push_back(y);
        if (got != expected) ++wrong;
      }
    });
  for (auto& c : callers) c.join();
  CHECK(wrong.load() == 0);
  const auto budget = static_cast<int>(parallel::detail::default_pools::thread_budget());
  CHECK(own_threads() <=
        baseline + budget + static_cast<int>(parallel::detail::resolve_workers(0)));
}

// A child forked while the parent's pools by size exist (one of them held by a lazy range) has
// none of their threads: it forgets them, builds its own, and leaves the parent's counts alone.
TEST_CASE("faults: a forked child gets working pools by size", "[faults][threads][fork]") {
  if (test_support::under_thread_sanitizer) {
    WARN("skipped: ThreadSanitizer does not support fork() in a multi-threaded program");
    return;
  }
  watchdog guard{"faults: pools by size across fork()", 60s};
  const std::vector<int> xs = numbers(200);
  const std::vector<int> expected = squares(200);
  REQUIRE(parallel::map(parallel::threads{.workers = 3}, square, xs) == expected);
  auto held = parallel::imap(parallel::threads{.workers = 5}, square, xs);
  std::vector<int> got;
  for (int y : held) got.push_back(y);  // every chunk done; the range (and its pool) still held
  REQUIRE(got == expected);
  const pid_t child = test_support::fork_when_pools_sleep();
  REQUIRE(child >= 0);
  if (child == 0) {
    { auto gone = std::move(held); }  // the inherited lease ends in the child
    const bool right = parallel::map(parallel::threads{.workers = 3}, square, xs) == expected &&
                       parallel::map(parallel::threads{.workers = 5}, square, xs) == expected &&
                       parallel::map(square, xs) == expected;
    ::_exit(right ? 0 : 1);
  }
  CHECK(wait_helper(child, 30'000) == 0);  // exited 0 in time
  REQUIRE(parallel::map(parallel::threads{.workers = 5}, square, xs) == expected);
}

#endif  // !_WIN32
