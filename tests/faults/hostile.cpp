// The process backends in a hostile environment: a worker that cannot be started (no processes
// left) while a pool replaces one, a pool whose n-th worker cannot start, a forkserver that is
// killed, a caller out of memory for a result, an idle worker stopped by a debugger at the
// pool's end, an initializer that never returns. Nothing may hang, abort, leak a process, or
// signal a process the library does not own.
//
// Resource limits are set in helpers (this program run again), never in the test runner. A
// check whose regression could signal pid -1 or 0 runs in a helper inside a pid namespace of its
// own, as a user id no other process has (so RLIMIT_NPROC counts the helper's own processes
// only), beside a canary process that such a signal would reach.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <optional>
#include <parallel/parallel.hpp>
#include <set>
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
int worker_pid(int) { return static_cast<int>(::getpid()); }

std::vector<char> big_result(std::size_t bytes) { return std::vector<char>(bytes, 'x'); }

int slow_square(int x) {
  shared_board().task_runs.fetch_add(1);
  sleep_ms(1500);
  return x * x;
}

void never_returning_initializer() {
  for (;;) sleep_ms(1000);
}

void slow_initializer() { sleep_ms(600); }

template <class Start>
constexpr bool is_forkserver = std::is_same_v<Start, parallel::start::forkserver>;

bool right_squares(const std::vector<int>& got, int n) { return got == squares(n); }

// --- helpers in a pid namespace ------------------------------------------------------------------

std::string own_executable() {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  return n < 0 ? std::string() : std::string(path, static_cast<std::size_t>(n));
}

/// How a helper in a pid namespace ran: its status, or why it could not run.
struct isolated_run {
  enum { ran, no_namespace, unreachable } how = ran;
  int status = 0;
};

/// Runs this program's hidden test case tagged "[.hostile_ns]" with `request`, in a new pid
/// namespace (with its own /proc), as user and group `uid`. unshare exits with 1 when the
/// namespace is refused (not root); setpriv with 126 or 127 when that user cannot reach this
/// executable (a build under a directory only root may enter). --kill-child: if the helper hangs
/// and unshare is killed, the namespace goes with it.
isolated_run run_isolated(const std::string& request, unsigned uid) {
  const std::string exe = own_executable();
  const std::string reuid = "--reuid=" + std::to_string(uid);
  const std::string regid = "--regid=" + std::to_string(uid);
  std::vector<std::string> args = {
      "unshare", "--pid",          "--fork", "--kill-child",  "--mount-proc", "setpriv",  reuid,
      regid,     "--clear-groups", exe,      "[.hostile_ns]", "--out",        "/dev/null"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "PARALLEL_FAULT_HELPER=", 22) != 0) envp.push_back(*e);
  std::string entry = "PARALLEL_FAULT_HELPER=" + request;
  envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::fflush(nullptr);
  pid_t pid = -1;
  if (::posix_spawnp(&pid, "unshare", nullptr, nullptr, argv.data(), envp.data()) != 0)
    return {isolated_run::no_namespace, 0};
  const int status = wait_helper(pid, 60'000);  // -1: it hung, and was killed
  if (WIFEXITED(status) && WEXITSTATUS(status) == 1) return {isolated_run::no_namespace, status};
  if (WIFEXITED(status) && WEXITSTATUS(status) >= 126) return {isolated_run::unreachable, status};
  return {isolated_run::ran, status};
}

// The helper's exit code when every check passed (not 0: a helper that matched no test case
// would exit with 0 as well).
constexpr int ok = 42;

/// Checks that the helper ran and passed. A machine that cannot isolate the check skips it,
/// except in CI as root (PARALLEL_REQUIRE_ISOLATION), where the namespace must work; a build
/// that other users cannot reach is skipped everywhere, with a warning that says so.
void expect_isolated_success(const std::string& request, unsigned uid) {
  INFO("helper request: " << request << " (as uid " << uid << " in a pid namespace)");
  const isolated_run run = run_isolated(request, uid);
  if (run.how == isolated_run::no_namespace) {
    if (std::getenv("PARALLEL_REQUIRE_ISOLATION") != nullptr)
      FAIL("no private pid namespace for the helper (unshare refused)");
    WARN("no private pid namespace for the helper (unshare refused): check skipped");
    return;
  }
  if (run.how == isolated_run::unreachable) {
    WARN("user " << uid << " cannot run this test program (a directory above it is closed to "
                 << "other users): check skipped; build under a world-readable path to run it");
    return;
  }
  INFO("status " << run.status << " (exit code "
                 << (WIFEXITED(run.status) ? WEXITSTATUS(run.status) : -1)
                 << "; the codes are in hostile.cpp)");
  CHECK(WIFEXITED(run.status));
  CHECK(WEXITSTATUS(run.status) == ok);
}

// The other exit codes of the helpers.
constexpr int no_error = 11;       // a call that had to fail succeeded
constexpr int wrong_error = 12;    // it failed, but not as documented
constexpr int not_usable = 13;     // the pool did not work afterwards
constexpr int wrong_results = 14;  // results were wrong
constexpr int left_behind = 15;    // a process or zombie was left behind
constexpr int no_abort = 16;       // send_signal(pid <= 0) did not stop the program
constexpr int started_late = 17;   // a worker was started long after it could be
constexpr int canary_gone = 20;    // something signalled a process the library does not own

void say(const std::string& what) {
  std::fprintf(stderr, "hostile helper: %s\n", what.c_str());
  std::fflush(stderr);
}

void set_soft_limit(int resource, rlim_t soft) {
  rlimit now{};
  ::getrlimit(resource, &now);
  now.rlim_cur = std::min(soft, now.rlim_max);
  if (::setrlimit(resource, &now) != 0) say("setrlimit failed");
}

void lift_soft_limit(int resource) {
  rlimit now{};
  ::getrlimit(resource, &now);
  now.rlim_cur = now.rlim_max;
  ::setrlimit(resource, &now);
}

/// Processes and threads in this pid namespace (all of them this helper's user's): what
/// RLIMIT_NPROC counts.
rlim_t tasks_here() {
  rlim_t n = 0;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream status(std::string("/proc/") + entry->d_name + "/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("Threads:", 0) == 0) n += std::stoul(line.substr(8));
  }
  ::closedir(dir);
  return n;
}

/// Waits up to two seconds for the processes in `pids` to be gone (not even zombies).
bool all_gone(const std::vector<int>& pids) {
  const std::uint64_t start = now_ns();
  for (;;) {
    bool any = false;
    for (int pid : pids) any = any || process_state(pid) != 0;
    if (!any) return true;
    if (ms_since(start) > 2000) return false;
    sleep_ms(5);
  }
}

/// The processes below this helper other than the canary (and the forkserver, which stays).
std::vector<int> leftovers(pid_t canary, bool keep_server) {
  std::vector<int> out;
  for (int child : children()) {
    if (child == canary) continue;
    const std::vector<int> below = children_of(child);
    if (keep_server) {
      out.insert(out.end(), below.begin(), below.end());  // its workers: there must be none
      continue;
    }
    out.push_back(child);
  }
  return out;
}

// Item: a pool retires a worker (max_tasks_per_child) and cannot start its replacement (no
// processes left for this user). Before the fix the error path sent SIGKILL to pid -1.
template <class Start>
int retire_without_replacement(pid_t canary) {
  parallel::process_pool<Start> pool{{.workers = 2, .max_tasks_per_child = 1}};
  if (!right_squares(pool.map(square, numbers(4), {.chunksize = 1}), 4)) return wrong_results;
  set_soft_limit(RLIMIT_NPROC, 0);  // no new process or thread for this user
  if constexpr (is_forkserver<Start>) {
    // The server forks as it pleases (its limit is its own): kill it, so that the replacement
    // needs a new server, which cannot start.
    for (int child : children())
      if (child != canary) ::kill(child, SIGKILL);
  }
  try {
    (void)pool.map(square, numbers(6), {.chunksize = 1});
    say("map succeeded with no worker able to start");
    return no_error;
  } catch (const parallel::spawn_error& e) {
    const std::string what = e.what();
    if (!contains(what, "could not be started") ||
        !contains(what, "Resource temporarily unavailable")) {
      say("unexpected message: " + what);
      return wrong_error;
    }
  } catch (const std::exception& e) {
    say(std::string("unexpected error: ") + e.what());
    return wrong_error;
  }
  lift_soft_limit(RLIMIT_NPROC);
  try {
    if (!right_squares(pool.map(square, numbers(6), {.chunksize = 1}), 6)) return wrong_results;
  } catch (const std::exception& e) {
    say(std::string("the pool did not start workers again: ") + e.what());
    return not_usable;
  }
  return ok;
}

// Item: the n-th worker of a pool of 8 cannot start; the workers already started are ended and
// reaped (no zombie); the same for a per-call map.
template <class Start>
int partial_start(pid_t canary) {
  // Room for the pool's I/O thread and one worker (and, with a forkserver, the server).
  const rlim_t room = tasks_here() + (is_forkserver<Start> ? 3 : 2);
  set_soft_limit(RLIMIT_NPROC, room);
  bool failed = false;
  try {
    parallel::process_pool<Start> pool{{.workers = 8}};
  } catch (const std::system_error& e) {
    failed = true;  // the pool's own thread was refused first (a sanitizer's thread counts too)
    if (!contains(e.what(), "I/O thread")) {
      say(std::string("unexpected message: ") + e.what());
      return wrong_error;
    }
  } catch (const parallel::spawn_error& e) {
    failed = true;
    if (!contains(e.what(), "could not")) {
      say(std::string("unexpected message: ") + e.what());
      return wrong_error;
    }
  }
  if (!failed) {
    say("a pool of 8 started within a limit of " + std::to_string(room) + " tasks");
    return no_error;
  }
  // Per call: fork degrades to the workers it could start; spawn and forkserver start a pool
  // for the call, which fails as above.
  try {
    const auto got = parallel::map(parallel::processes<Start>{.workers = 8}, square, numbers(20));
    if (!right_squares(got, 20)) return wrong_results;
  } catch (const parallel::spawn_error&) {
  } catch (const std::system_error& e) {  // the call's pool's own thread was refused
    if (!contains(e.what(), "I/O thread")) {
      say(std::string("unexpected message: ") + e.what());
      return wrong_error;
    }
  }
  lift_soft_limit(RLIMIT_NPROC);
  const std::vector<int> left = leftovers(canary, is_forkserver<Start>);
  if (!all_gone(left)) {
    say(std::to_string(left.size()) + " processes left behind after a failed start");
    return left_behind;
  }
  if constexpr (is_forkserver<Start>) {
    // The server keeps the limits it started with: a new one, started now, has none.
    for (int child : children())
      if (child != canary) ::kill(child, SIGKILL);
  }
  parallel::process_pool<Start> pool{{.workers = 2}};
  if (!right_squares(pool.map(square, numbers(10)), 10)) return not_usable;
  return ok;
}

/// An item that waits (up to 20 s) until a second item has started, in another worker.
int meet_another(int) { return meet_another_item(20'000); }

// Item: a worker of a pool dies and its replacement cannot be started (no processes left) while
// the survivor runs an item that waits for a second one, queued behind it. Once processes can
// be started again, the pool starts the replacement by itself, which takes the queued item.
// Before the fix it was started at the next unrelated event: here the first item giving up its
// wait, 20 s later, after which both ran in the survivor.
template <class Start>
int replace_when_possible(pid_t canary) {
  parallel::process_pool<Start> pool{{.workers = 2}};
  if (!right_squares(pool.map(square, numbers(4), {.chunksize = 1}), 4)) return wrong_results;
  std::vector<int> workers;
  for (int child : children())
    if (child != canary) workers.push_back(child);
  if (workers.size() != 2) {
    say("expected 2 workers, found " + std::to_string(workers.size()));
    return wrong_results;
  }
  reset_board();
  std::atomic<bool> limited{false};
  std::thread lifter([&] {  // started while threads may still be made
    while (!limited.load()) sleep_ms(1);
    sleep_ms(400);
    lift_soft_limit(RLIMIT_NPROC);
  });
  set_soft_limit(RLIMIT_NPROC, 0);
  limited = true;
  ::kill(workers.front(), SIGKILL);
  const std::uint64_t start = now_ns();
  std::vector<int> pids;
  try {
    pids = pool.map(meet_another, numbers(2), {.chunksize = 1});
  } catch (const std::exception& e) {
    say(std::string("unexpected error: ") + e.what());
    lifter.join();
    return wrong_error;
  }
  const double took = ms_since(start);
  lifter.join();
  if (pids.size() != 2 || pids[0] == pids[1] || took > 10'000) {
    say("the replacement came late: the map took " + std::to_string(took) + " ms" +
        (pids.size() == 2 && pids[0] == pids[1] ? ", both items in one worker" : ""));
    return started_late;
  }
  return ok;
}

// Item: the one function that sends signals refuses pid <= 0, loudly.
int refuse_bad_pids() {
  for (const int bad : {-1, 0}) {
    const pid_t child = ::fork();
    if (child == 0) {
      const int quiet = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
      if (quiet >= 0) ::dup2(quiet, 2);  // the expected report, kept out of the test's log
      parallel::detail::os::send_signal(bad, bad < 0 ? SIGKILL : SIGTERM);
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
      say("send_signal(" + std::to_string(bad) + ") did not abort");
      return no_abort;
    }
  }
  return ok;
}

template <class Start>
int serve(const std::string& scenario, pid_t canary) {
  if (scenario == "retire") return retire_without_replacement<Start>(canary);
  if (scenario == "partial") return partial_start<Start>(canary);
  if (scenario == "replace") return replace_when_possible<Start>(canary);
  return 3;
}

int run_isolated_request(const std::string& request) {
  // A process of this user that a kill(-1, ...) or a kill(0, ...) would reach.
  const pid_t canary = ::fork();
  if (canary == 0) {
    ::setpgid(0, 0);
    for (;;) ::pause();
  }
  const std::size_t space = request.find(' ');
  const std::string scenario = request.substr(0, space);
  const std::string method = space == std::string::npos ? std::string() : request.substr(space + 1);
  int code = 3;
  try {
    if (scenario == "signal")
      code = refuse_bad_pids();
    else if (method == "fork")
      code = serve<parallel::start::fork>(scenario, canary);
    else if (method == "spawn")
      code = serve<parallel::start::spawn>(scenario, canary);
    else if (method == "forkserver")
      code = serve<parallel::start::forkserver>(scenario, canary);
  } catch (const std::exception& e) {
    say(std::string("unexpected exception: ") + e.what());
    code = 4;
  }
  int status = 0;
  if (::waitpid(canary, &status, WNOHANG) != 0) {
    say("the canary was killed");
    code = canary_gone;
  }
  ::kill(canary, SIGKILL);
  ::waitpid(canary, &status, 0);
  return code;
}

// Each check gets a user id of its own: RLIMIT_NPROC counts every process of a user, and checks
// run side by side.
template <class Start>
unsigned isolated_uid(unsigned base) {
  return base + (std::is_same_v<Start, parallel::start::fork>    ? 0
                 : std::is_same_v<Start, parallel::start::spawn> ? 1
                                                                 : 2);
}

}  // namespace

TEST_CASE("hostile helper: a caller in a pid namespace of its own", "[.hostile_ns]") {
  const char* request = helper_request();
  if (request == nullptr) return;
  ::_exit(run_isolated_request(request));
}

TEST_CASE("hostile: the library never sends a signal to pid -1 or 0", "[faults]") {
  watchdog guard{"hostile: send_signal", 90s};
  expect_isolated_success("signal", 61990);
}

TEMPLATE_TEST_CASE(
    "hostile: a pool that cannot replace a retired worker fails with spawn_error, signals nothing "
    "else, and starts workers again later",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"hostile: retire without replacement", 90s};
  expect_isolated_success(std::string("retire ") + (method_name<TestType>() + 7),
                          isolated_uid<TestType>(61900));
}

TEMPLATE_TEST_CASE(
    "hostile: when the n-th worker cannot start, the pool fails and leaves no process behind",
    "[faults][process_pool][processes]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"hostile: partial start", 90s};
  expect_isolated_success(std::string("partial ") + (method_name<TestType>() + 7),
                          isolated_uid<TestType>(61910));
}

TEMPLATE_TEST_CASE(
    "hostile: a pool whose replacement worker was refused starts it once it can, and the "
    "replacement takes the work queued in the other worker",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn) {
  // (A forkserver's server forks under limits of its own: not refused here.)
  watchdog guard{"hostile: replace when possible", 90s};
  expect_isolated_success(std::string("replace ") + (method_name<TestType>() + 7),
                          isolated_uid<TestType>(61920));
}

// --- a killed forkserver
// ---------------------------------------------------------------------------

namespace {

/// The forkserver of this process: its one child while a forkserver pool is up.
int the_forkserver() {
  const std::vector<int> kids = children();
  REQUIRE(kids.size() == 1);
  return kids.front();
}

}  // namespace

TEST_CASE("hostile: a killed forkserver neither hangs its pool nor breaks it",
          "[faults][process_pool]") {
  watchdog guard{"hostile: killed forkserver", 60s};
  reset_board();
  parallel::process_pool<parallel::start::forkserver> pool{{.workers = 2}};
  REQUIRE(right_squares(pool.map(square, numbers(8)), 8));

  // Idle: the next call runs on workers of a new server (or says why not), and the one after
  // works.
  const int first = the_forkserver();
  const std::vector<int> old_workers = children_of(first);
  REQUIRE(::kill(first, SIGKILL) == 0);
  try {
    // Not inside CHECK: CHECK would take the exception as a failure before the catch below.
    const bool right = right_squares(pool.map(square, numbers(8)), 8);
    CHECK(right);
  } catch (const parallel::error& e) {
    INFO(e.what());
    CHECK(contains(e.what(), "forkserver"));
  }
  // The old server's workers end with it, but not at once (slowly under a sanitizer): the call
  // above may have run on them before they did. Once they are gone, the next call works.
  const std::uint64_t killed = now_ns();
  const auto gone = [](int pid) {
    const char state = process_state(pid);
    return state == 0 || state == 'Z';
  };
  while (!std::all_of(old_workers.begin(), old_workers.end(), gone) && ms_since(killed) < 5000)
    sleep_ms(5);
  CHECK(right_squares(pool.map(square, numbers(8)), 8));
  // The old server is reaped once the pool sees its workers end (a call right after the kill
  // may still have run on them).
  const std::uint64_t since = now_ns();
  while (!reaped(first) && ms_since(since) < 5000) sleep_ms(5);
  CHECK(reaped(first));

  // Busy: the task in flight fails, naming the server's end; the pool goes on.
  auto busy = pool.submit(slow_square, 3);
  while (shared_board().task_runs.load() == 0) sleep_ms(1);
  const int second = the_forkserver();
  CHECK(second != first);
  REQUIRE(::kill(second, SIGKILL) == 0);
  try {
    (void)busy.get();
    FAIL("the task of a worker whose forkserver was killed completed");
  } catch (const parallel::worker_died& e) {
    INFO(e.what());
    CHECK(contains(e.what(), "forkserver"));
  }
  CHECK(right_squares(pool.map(square, numbers(8)), 8));

  // Per call: a call after the server died starts a new one.
  const int third = the_forkserver();
  REQUIRE(::kill(third, SIGKILL) == 0);
  sleep_ms(20);
  CHECK(right_squares(parallel::map(parallel::processes<parallel::start::forkserver>{.workers = 2},
                                    square, numbers(8)),
                      8));
}

// --- a caller out of memory
// -------------------------------------------------------------------------

namespace {

std::size_t address_space_in_use() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmSize:", 0) == 0) return std::stoul(line.substr(7)) * 1024;
  return 0;
}

template <class Start>
int out_of_memory() {
  parallel::process_pool<Start> pool{{.workers = 1}};
  if (!right_squares(pool.map(square, numbers(4)), 4)) return wrong_results;
  // Room for ~256 MiB more in this process; the worker, started before, has no such limit.
  set_soft_limit(RLIMIT_AS, address_space_in_use() + (std::size_t{256} << 20));
  auto too_big = pool.submit(big_result, std::size_t{400} << 20);
  try {
    (void)too_big.get();
    say("a 400 MiB result arrived under a 256 MiB limit");
    return no_error;
  } catch (const std::bad_alloc&) {
  } catch (const std::exception& e) {
    if (!contains(e.what(), "bad_alloc") && !contains(e.what(), "memory")) {
      say(std::string("unexpected error: ") + e.what());
      return wrong_error;
    }
  }
  try {
    if (!right_squares(pool.map(square, numbers(16)), 16)) return wrong_results;
  } catch (const std::exception& e) {
    say(std::string("the pool did not go on: ") + e.what());
    return not_usable;
  }
  return ok;
}

}  // namespace

TEST_CASE("hostile helper: a caller with an address-space limit", "[.hostile_memory]") {
  const char* request = helper_request();
  if (request == nullptr) return;
  const std::string method = request;
  int code = 3;
  try {
    if (method == "start::fork") code = out_of_memory<parallel::start::fork>();
    if (method == "start::spawn") code = out_of_memory<parallel::start::spawn>();
    if (method == "start::forkserver") code = out_of_memory<parallel::start::forkserver>();
  } catch (const std::exception& e) {
    say(std::string("unexpected exception: ") + e.what());
    code = 4;
  }
  ::_exit(code);
}

TEMPLATE_TEST_CASE(
    "hostile: a result the caller has no memory for fails its call with bad_alloc, and the pool "
    "goes on",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  if (test_support::under_sanitizer) {
    SUCCEED("skipped: a sanitizer's runtime reserves terabytes of address space");
    return;
  }
  watchdog guard{"hostile: out of memory", 90s};
  const pid_t helper =
      start_helper({.tag = "[.hostile_memory]", .request = method_name<TestType>()});
  const int status = wait_helper(helper, 60'000);
  INFO("exit code " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << " (codes in hostile.cpp)");
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == ok);
}

// --- waits that must end ------------------------------------------------------------------------

TEMPLATE_TEST_CASE("hostile: a pool with a stopped idle worker is destroyed, the worker killed",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"hostile: stopped worker", 60s};
  warm_up<TestType>();
  int stopped = 0;
  {
    parallel::process_pool<TestType> pool{{.workers = 2}};
    const std::vector<int> pids = pool.map(worker_pid, numbers(16), {.chunksize = 1});
    stopped = pids.front();
    REQUIRE(::kill(stopped, SIGSTOP) == 0);
  }  // the destructor returns: the stopped worker is killed after a grace period
  if constexpr (is_forkserver<TestType>) {
    CHECK(all_gone({stopped}));  // the server's child, reaped by the server
  } else {
    CHECK(reaped(stopped));
  }
}

namespace {

/// Context switches of every thread of this process: a loop that polls every millisecond makes
/// hundreds a second, one that sleeps until its deadline a handful.
long context_switches() {
  long total = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream status(std::string("/proc/self/task/") + entry->d_name + "/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) total += std::stol(line.substr(24));
  }
  ::closedir(dir);
  return total;
}

}  // namespace

TEMPLATE_TEST_CASE(
    "hostile: a worker whose initializer never returns is stopped and reported as spawn_error",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"hostile: initializer never returns", 60s};
  {
    parallel::process_pool<TestType> pool{
        {.workers = 1, .initializer = never_returning_initializer, .start_timeout = 300ms}};
    try {
      (void)pool.map(square, numbers(4));
      FAIL("a map on a pool whose initializer never returns completed");
    } catch (const parallel::spawn_error& e) {
      INFO(e.what());
      CHECK(contains(e.what(), "initializer"));
      CHECK(contains(e.what(), "start_timeout"));
    }
  }
  {
    // Default start_timeout (a minute): the call's own timeout bounds the wait.
    parallel::process_pool<TestType> pool{
        {.workers = 1, .initializer = never_returning_initializer}};
    try {
      (void)pool.map(square, numbers(4), {.timeout = 300ms});
      FAIL("a map with a timeout waited past it for a worker that never became ready");
    } catch (const parallel::spawn_error& e) {
      INFO(e.what());
      CHECK(contains(e.what(), "initializer"));
      CHECK(contains(e.what(), "options.timeout"));
    }
  }
}

TEMPLATE_TEST_CASE("hostile: waiting for a worker's initializer does not poll",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"hostile: no polling", 60s};
  parallel::process_pool<TestType> pool{{.workers = 1, .initializer = slow_initializer}};
  const long before = context_switches();
  CHECK(right_squares(pool.map(square, numbers(4), {.timeout = 5s}), 4));
  const long switches = context_switches() - before;
  INFO(switches << " context switches while the initializer ran for 600 ms");
  CHECK(switches < 100);  // polling every millisecond makes ~600
}

#endif  // !_WIN32
