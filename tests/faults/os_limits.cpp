// A hostile environment the caller was started in, with every start method, per call and pooled:
// a small descriptor limit (RLIMIT_NOFILE), a limited address space (RLIMIT_AS), signals the
// caller ignores or catches, and a caller whose descriptors 0-2 are closed (a daemon). Each case
// runs in a helper: this program run again (helper_process.hpp), which sets the limit or the
// signal dispositions on itself, runs the calls, and reports through its exit status (0: all
// right) and its standard error; the test runner itself is never limited.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <parallel/parallel.hpp>
#include <string>
#include <type_traits>
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

constexpr int workers = 8;

// --- the helper's side ----------------------------------------------------------------------

/// Where the helper says what went wrong: its stderr, or a copy of it kept above 0-2.
int report_fd = 2;

void report(const std::string& line) {
  const std::string text = line + "\n";
  write_fully(report_fd, text.data(), text.size());
}

/// Runs check(runner) per call (processes<Start>{.workers = n}) and on a pool of n (made inside
/// the check's try, so that a constructor's error counts); how many of the two failed, each
/// failure reported. `expect_error`: the text a spawn_error must contain instead of success.
template <class Start, class Check>
int per_call_and_pooled(Check check, const std::vector<std::string>& expect_error = {},
                        int n = workers) {
  int failed = 0;
  const auto attempt = [&](const char* mode, auto run) {
    const std::string name = std::string(method_name<Start>()) + ", " + mode;
    try {
      const bool right = run();
      // A per-call fork map goes on with the workers it could start (a pool's constructor
      // cannot: it promised n): right results there are what a user wants.
      const bool degrades =
          std::is_same_v<Start, parallel::start::fork> && std::string(mode) == "per call";
      if (!expect_error.empty() && !(degrades && right)) {
        report(name + ": succeeded, where a spawn_error was expected");
        ++failed;
      } else if (!right) {
        report(name + ": wrong results");
        ++failed;
      }
    } catch (const parallel::spawn_error& e) {
      report(name + ": spawn_error: " + e.what());
      bool named = !expect_error.empty();
      for (const auto& part : expect_error) named = named && contains(e.what(), part);
      failed += named ? 0 : 1;
    } catch (const std::exception& e) {
      report(name + ": " + e.what());
      ++failed;
    }
  };
  attempt("per call", [&] {
    per_call_of<Start> runner{n};
    return check(runner);
  });
  attempt("pooled", [&] {
    pool_of<Start> pool{{.workers = n}};
    return check(pool);
  });
  return failed;
}

int square(int x) { return x * x; }

/// Squares of 0..31, one item a task: every worker gets some.
template <class Runner>
bool squares_right(Runner& runner) {
  return runner.map(square, numbers(32), {.chunksize = 1}) == squares(32);
}

/// 200 KiB results: above the arena's threshold, so through the ring where there is one.
std::string large(int x) { return std::string(std::size_t{200} << 10, static_cast<char>('a' + x)); }

template <class Runner>
bool large_results_right(Runner& runner) {
  const std::vector<std::string> got = runner.map(large, numbers(16), {.chunksize = 1});
  if (got.size() != 16) return false;
  for (int i = 0; i < 16; ++i)
    if (got[static_cast<std::size_t>(i)] != large(i)) return false;
  return true;
}

void limit(int resource, rlim_t value) {
  rlimit l{};
  ::getrlimit(resource, &l);
  l.rlim_cur = value;
  if (::setrlimit(resource, &l) != 0) {
    report(std::string("setrlimit failed: ") + std::strerror(errno));
    ::_exit(90);
  }
}

/// This process's address space in bytes (VmSize).
std::size_t address_space_used() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  return 0;
}

/// Mappings of a worker's arena (memfd "parallel-arena") exactly `bytes` long.
int arena_mappings_of(std::size_t bytes) {
  std::ifstream in("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (!contains(line, "parallel-arena")) continue;
    const auto dash = line.find('-');
    const auto space = line.find(' ');
    const std::size_t from = std::stoull(line.substr(0, dash), nullptr, 16);
    const std::size_t to = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
    n += to - from == bytes ? 1 : 0;
  }
  return n;
}

// What each case's task reports of its own signal dispositions, one bit each.
constexpr int int_ignored = 1, term_ignored = 2, usr1_default = 4, int_default = 8;

bool disposition_is(int sig, void (*handler)(int)) {
  struct sigaction action {};
  ::sigaction(sig, nullptr, &action);
  return (action.sa_flags & SA_SIGINFO) == 0 && action.sa_handler == handler;
}

int dispositions() {
  return (disposition_is(SIGINT, SIG_IGN) ? int_ignored : 0) |
         (disposition_is(SIGTERM, SIG_IGN) ? term_ignored : 0) |
         (disposition_is(SIGUSR1, SIG_DFL) ? usr1_default : 0) |
         (disposition_is(SIGINT, SIG_DFL) ? int_default : 0);
}

/// Reports its dispositions, then sends itself SIGINT and SIGTERM: a worker that ignores them
/// returns.
int ignoring_task(int x) {
  const int seen = dispositions();
  ::raise(SIGINT);
  ::raise(SIGTERM);
  return seen * 1000 + x;
}

int reporting_task(int x) { return dispositions() * 1000 + x; }

void on_usr1(int) {}

template <class Start>
int serve(const std::string& scenario) {
  if (scenario == "nofile-64") {
    // Enough for 8 workers (2 descriptors each here, 3 more while one starts), not for
    // descriptors moved to 100 and above. (Under a sanitizer, 4: 16 spawned workers take over
    // 2 s there, and 4 fail the same way.)
    limit(RLIMIT_NOFILE, 64);
    return per_call_and_pooled<Start>([](auto& r) { return squares_right(r); }, {},
                                      test_support::under_sanitizer ? 4 : workers);
  }
  if (scenario == "nofile-12") {
    limit(RLIMIT_NOFILE, 12);
    return per_call_and_pooled<Start>([](auto& r) { return squares_right(r); },
                                      {"RLIMIT_NOFILE", "ulimit -n", "fewer workers"});
  }
  if (scenario == "nofile-server") {
    // The forkserver's own limit lowered to 6 (prlimit): room for its own descriptors (0-2,
    // its channel, its signalfd), not for both of a request's. Its start of a worker fails,
    // and the caller hears why instead of waiting for an answer forever.
    { pool_of<Start> warm{{.workers = 1}}; }
    const std::vector<int> servers = children();
    if (servers.size() != 1) return 94;
    rlimit six{};
    ::getrlimit(RLIMIT_NOFILE, &six);
    six.rlim_cur = 6;
    if (::prlimit(servers[0], RLIMIT_NOFILE, &six, nullptr) != 0) return 95;
    return per_call_and_pooled<Start>([](auto& r) { return squares_right(r); },
                                      {"forkserver", "RLIMIT_NOFILE", "ulimit -n"}, 2);
  }
  if (scenario == "as-500000") {
    limit(RLIMIT_AS, rlim_t{500000} * 1024);  // 64 MiB rings for 8 workers would be 512 MiB
    return per_call_and_pooled<Start>([](auto& r) { return large_results_right(r); });
  }
  if (scenario == "as-tight") {
    // Room for one ring of the 16 MiB this limit allows a worker (and the pool's thread), not
    // for 8: the others run with their control page alone (their results come by the socket).
    const std::size_t used = address_space_used();
    const std::size_t gib = std::size_t{1} << 30;
    void* reserved =
        ::mmap(nullptr, gib - used, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserved == MAP_FAILED) return 91;
    limit(RLIMIT_AS, address_space_used() + (std::size_t{30} << 20));
    int failed = 0;
    try {
      pool_of<Start> pool{{.workers = workers}};
      const int control_only = arena_mappings_of(4096);
      if (control_only == 0) {
        report("no worker runs without a ring, although 8 rings do not fit");
        ++failed;
      }
      ::munmap(reserved, gib - used);
      reserved = nullptr;
      if (!large_results_right(pool)) {
        report("wrong results");
        ++failed;
      }
    } catch (const std::exception& e) {
      report(std::string("pool of 8 under a tight address space: ") + e.what());
      ++failed;
    }
    if (reserved != nullptr) ::munmap(reserved, gib - used);
    return failed;
  }
  if (scenario == "as-none") {
    // No address space left at all, but free heap (kept, not returned to the system): the first
    // thing that needs new address space is the worker's arena. A call that starts a thread
    // first (a pool's I/O thread) fails there instead, with std::system_error: the OS layer's
    // message is checked on the arena itself and on a per-call fork, which starts no thread.
    ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
    ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
    ::free(::malloc(std::size_t{8} << 20));
    limit(RLIMIT_AS, address_space_used());
    int failed = 0;
    const std::vector<std::string> named = {"RLIMIT_AS", "ulimit -v", "fewer workers"};
    try {
      parallel::detail::ipc::arena shared(std::size_t{64} << 20);
      report("an arena was made with no address space left");
      ++failed;
    } catch (const parallel::spawn_error& e) {
      report(std::string("arena: ") + e.what());
      for (const auto& part : named) failed += contains(e.what(), part) ? 0 : 1;
    }
    try {
      (void)parallel::map(parallel::processes<Start>{.workers = workers}, square, numbers(32));
      report("a per-call map succeeded with no address space left");
      ++failed;
    } catch (const parallel::spawn_error& e) {
      report(std::string("per call: ") + e.what());
      for (const auto& part : named) failed += contains(e.what(), part) ? 0 : 1;
    }
    return failed;
  }
  if (scenario == "signals") {
    // Phase 1: the server (forkserver) is started while the caller takes SIGINT by default,
    // and ignores it itself (Ctrl-C is not for it): its workers take it by default, as their
    // caller does.
    { pool_of<Start> warm{{.workers = 1}}; }
    std::vector<int> want;
    for (int x = 0; x < 16; ++x) want.push_back((int_default | usr1_default) * 1000 + x);
    int failed = per_call_and_pooled<Start>(
        [&](auto& r) { return r.map(reporting_task, numbers(16), {.chunksize = 1}) == want; }, {},
        2);
    // Phase 2: SIGINT and SIGTERM ignored (nohup, `trap '' INT`, a background job), SIGUSR1
    // caught: the workers ignore the first two and take SIGUSR1 by default.
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGUSR1, on_usr1);
    want.clear();
    for (int x = 0; x < 16; ++x)
      want.push_back((int_ignored | term_ignored | usr1_default) * 1000 + x);
    failed += per_call_and_pooled<Start>(
        [&](auto& r) { return r.map(ignoring_task, numbers(16), {.chunksize = 1}) == want; }, {},
        2);
    if constexpr (std::is_same_v<Start, parallel::start::forkserver>) {
      // Phase 3, a caller that handles Ctrl-C itself: the server (this helper's only child
      // now) is not interrupted with it, and the caller's next pool is served by it.
      ::signal(SIGINT, on_usr1);
      const std::vector<int> servers = children();
      for (int pid : servers) ::kill(pid, SIGINT);
      sleep_ms(50);
      for (int pid : servers) {
        if (process_state(pid) == 0 || process_state(pid) == 'Z') {
          report("the forkserver ended on SIGINT");
          ++failed;
        }
      }
      pool_of<Start> pool{{.workers = 2}};
      if (pool.map(square, numbers(8)) != squares(8)) ++failed;
      if (children() != servers) {
        report("the pool after SIGINT was not served by the same forkserver");
        ++failed;
      }
    }
    return failed;
  }
  if (scenario == "closed-stdio") {
    // A daemon: 0, 1 and 2 closed before the library makes any descriptor.
    report_fd = ::fcntl(2, F_DUPFD_CLOEXEC, 10);
    ::close(0);
    ::close(1);
    ::close(2);
    return per_call_and_pooled<Start>(
        [](auto& r) {
          return r.map(
                     [](int x) {
                       std::printf("task %d writes to its stdout\n", x);
                       std::fflush(stdout);
                       std::fprintf(stderr, "task %d writes to its stderr\n", x);
                       (void)::write(1, "raw\n", 4);
                       return x * x;
                     },
                     numbers(32), {.chunksize = 1}) == squares(32);
        },
        {}, 4);
  }
  report("unknown scenario " + scenario);
  return 92;
}

/// What the test runner does: starts the helper for `scenario` with Start, waits at most 30 s,
/// and checks it exited 0; its report is shown.
template <class Start>
void run_helper(const std::string& scenario) {
  watchdog guard{"faults: os limits helper", 60s};
  const int err = ::memfd_create("os-limits-report", MFD_CLOEXEC);
  REQUIRE(err >= 0);
  const pid_t helper = start_helper({.tag = "[fault_os_limits]",
                                     .request = scenario + ":" + method_name<Start>(),
                                     .stderr_fd = err});
  const int status = wait_helper(helper, 30'000);
  struct stat st {};
  ::fstat(err, &st);
  std::string said(static_cast<std::size_t>(st.st_size), '\0');
  (void)::pread(err, said.data(), said.size(), 0);
  ::close(err);
  INFO(method_name<Start>() << ", " << scenario << ": the helper said:\n" << said);
  REQUIRE(status != -1);  // not killed by wait_helper: it ended within 30 s
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

}  // namespace

#endif  // !_WIN32

#if !defined(_WIN32)

TEST_CASE("faults helper: a caller under limits, with ignored signals or closed stdio",
          "[.fault_os_limits]") {
  const char* request = helper_request();
  if (request == nullptr) return;
  const std::string text = request;
  const std::string scenario = text.substr(0, text.find(':'));
  const std::string method = text.substr(text.find(':') + 1);
  int code = 93;
  if (method == method_name<parallel::start::fork>())
    code = serve<parallel::start::fork>(scenario);
  else if (method == method_name<parallel::start::spawn>())
    code = serve<parallel::start::spawn>(scenario);
  else if (method == method_name<parallel::start::forkserver>())
    code = serve<parallel::start::forkserver>(scenario);
  std::fflush(nullptr);
  ::_exit(code);
}

TEMPLATE_TEST_CASE("faults: a pool of 8 works under ulimit -n 64",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  run_helper<TestType>("nofile-64");
}

TEMPLATE_TEST_CASE("faults: too few descriptors for a pool is a spawn_error naming RLIMIT_NOFILE",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  run_helper<TestType>("nofile-12");
}

TEST_CASE("faults: a forkserver out of descriptors answers with a spawn_error naming RLIMIT_NOFILE",
          "[faults][processes][process_pool]") {
  run_helper<parallel::start::forkserver>("nofile-server");
}

// The sanitizers reserve terabytes of address space for their shadow memory: no RLIMIT_AS there.
TEMPLATE_TEST_CASE("faults: a pool of 8 works under ulimit -v 500000",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  if (test_support::under_sanitizer) return;
  run_helper<TestType>("as-500000");
}

TEMPLATE_TEST_CASE("faults: workers whose ring does not fit send their results by the socket",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  if (test_support::under_sanitizer) return;
  run_helper<TestType>("as-tight");
}

TEST_CASE("faults: no address space for a worker's arena is a spawn_error naming RLIMIT_AS",
          "[faults][processes]") {
  if (test_support::under_sanitizer) return;
  run_helper<parallel::start::fork>("as-none");
}

TEMPLATE_TEST_CASE(
    "faults: workers ignore the signals their caller ignores and take caught ones by default",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  run_helper<TestType>("signals");
}

TEMPLATE_TEST_CASE("faults: a caller with descriptors 0-2 closed gets its results",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  run_helper<TestType>("closed-stdio");
}

#endif  // !_WIN32
