// The caller of a pool or of a per-call map is killed (SIGKILL), or its process group gets
// Ctrl-C (SIGINT): every process it started, idle or busy, is gone within 1 s (with
// start::forkserver: the server and every worker it forked), and no zombie or IPC object is
// left behind. For start::fork, start::spawn and start::forkserver. The second is the target,
// reported (a warning above it); what is asserted is that each one ends within 20 s, which
// none would by itself: a busy worker's task sleeps a minute, and an idle one waits for ever.
//
// The caller is this test program run again (fault_support's helper), in a hidden test case. Its
// workers report through the caller's standard input, the write end of a pipe to the test: the
// one descriptor besides stdout and stderr that spawned workers, the forkserver and its workers
// all inherit. The test makes itself a child subreaper first, so the orphans become its
// children: it sees each one end and reaps it (no init in between that may or may not reap
// zombies), and cleans up one that outlives the check. The caller has a private /dev/shm of its
// own (a mount namespace), which the test reads after the end: other programs of the machine
// (an MPI job) may create entries in the real one meanwhile.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <parallel/parallel.hpp>
#include <set>
#include <string>
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

constexpr double target_ms = 1000;
constexpr double watch_ms = 20'000;  // well under the tasks' minute (test_support.hpp)

// In the caller and inherited by every process it starts: where they report.
constexpr int report_fd = 0;

/// Reports "worker <pid> started" (a positive pid) or "<pid> runs a task" (a negative one).
void report(int record) { write_fully(report_fd, &record, sizeof record); }

void report_start() { report(static_cast<int>(::getpid())); }

int report_and_sleep(int x) {
  report(-static_cast<int>(::getpid()));
  sleep_ms(60'000);
  return x;
}

enum class caller_kind { pool_idle_and_busy, per_call_map };

/// The caller, in the helper: starts workers, then waits to be killed.
template <class Start>
[[noreturn]] void run_caller(caller_kind kind) {
  try {
    if (kind == caller_kind::pool_idle_and_busy) {
      // Three workers: two run a long task, one is idle.
      pool_of<Start> pool{{.workers = 3, .initializer = report_start}};
      auto a = pool.submit(report_and_sleep, 0);
      auto b = pool.submit(report_and_sleep, 1);
      sleep_ms(60'000);
    } else {
      (void)parallel::map(parallel::processes<Start>{.workers = 2}, report_and_sleep, numbers(2),
                          {.chunksize = 1});
    }
  } catch (...) {
    ::_exit(2);
  }
  ::_exit(0);
}

const char* kind_name(caller_kind kind) {
  return kind == caller_kind::pool_idle_and_busy ? "pool" : "per-call";
}

/// Reads records until `starts` positive and `tasks` negative ones came (or 30 s passed: an
/// -O0 sanitizer build on a loaded machine starts workers slowly); returns the workers' pids.
std::set<int> read_workers(int fd, int starts, int tasks) {
  std::set<int> pids;
  int started = 0;
  int running = 0;
  const std::uint64_t begin = now_ns();
  while ((started < starts || running < tasks) && ms_since(begin) < 30'000) {
    pollfd ready{fd, POLLIN, 0};
    if (::poll(&ready, 1, 100) <= 0) continue;
    int record = 0;
    if (::read(fd, &record, sizeof record) != static_cast<ssize_t>(sizeof record)) break;
    if (record > 0) {
      ++started;
      pids.insert(record);
    } else {
      ++running;
      pids.insert(-record);
    }
  }
  INFO(started << " workers reported their start, " << running << " their task");
  CHECK(started >= starts);
  CHECK(running >= tasks);
  return pids;
}

/// This process is a child subreaper while it lives.
class subreaper {
 public:
  subreaper() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0); }
  subreaper(const subreaper&) = delete;
  subreaper& operator=(const subreaper&) = delete;
  ~subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
};

/// Waits (at most watch_ms) until each of `pids` ended and was reaped, here (orphaned to this
/// process) or by its own parent; reports how long each took after `since_ns`, with a warning
/// above target_ms. Kills and reaps the ones still alive.
void expect_all_end(const std::set<int>& pids, std::uint64_t since_ns) {
  std::map<int, double> ended_ms;
  while (ended_ms.size() < pids.size() && ms_since(since_ns) < watch_ms) {
    for (int pid : pids) {
      if (ended_ms.count(pid) != 0) continue;
      int status = 0;
      const pid_t got = ::waitpid(pid, &status, WNOHANG);
      // Not a child of this process, and gone: its own parent reaped it before that parent
      // ended (a forkserver reaps the workers that end before it does).
      const bool reaped_elsewhere = got < 0 && errno == ECHILD && process_state(pid) == 0;
      if (got == pid || reaped_elsewhere) {
        ended_ms[pid] = ms_since(since_ns);
        INFO("worker " << pid << " ended after " << ended_ms[pid] << " ms, status " << status);
      }
    }
    sleep_ms(1);
  }
  for (int pid : pids) {
    INFO("worker " << pid);
    if (ended_ms.count(pid) == 0) {
      FAIL_CHECK("still running (state '" << process_state(pid) << "') " << watch_ms / 1000
                                          << " s after its caller");
      ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      continue;
    }
    if (ended_ms[pid] > target_ms)
      WARN("worker " << pid << " ended " << ended_ms[pid] << " ms after its caller (target "
                     << target_ms << " ms)");
  }
}

/// The entries of the directory `fd` refers to (read from its start).
std::vector<std::string> entries_of(int fd) {
  std::vector<std::string> out;
  const int copy = ::dup(fd);
  if (copy < 0) return out;
  DIR* dir = ::fdopendir(copy);
  if (dir == nullptr) {
    ::close(copy);
    return out;
  }
  ::rewinddir(dir);
  while (const dirent* entry = ::readdir(dir))
    if (std::string(entry->d_name) != "." && std::string(entry->d_name) != "..")
      out.emplace_back(entry->d_name);
  ::closedir(dir);
  return out;
}

/// The mount namespace of process `pid` ("self": this one).
std::string mount_namespace(const std::string& pid) {
  char target[128];
  const ssize_t n = ::readlink(("/proc/" + pid + "/ns/mnt").c_str(), target, sizeof target - 1);
  return n < 0 ? std::string() : std::string(target, static_cast<std::size_t>(n));
}

/// In the helper, first: a mount namespace of its own with an empty, private /dev/shm, so that
/// the test can tell what the caller and its workers left there from what other programs of
/// this machine create meanwhile. Left as it is when that is refused.
void private_dev_shm() {
  if (::unshare(CLONE_NEWNS) != 0) return;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0)
    (void)::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=16m");
}

/// Starts the caller, waits for its workers, signals it (or its process group), and checks
/// that the caller and every process below it end.
template <class Start>
void kill_the_caller(caller_kind kind, int starts, int tasks, int signal, bool whole_group) {
  INFO(method_name<Start>() << ", " << kind_name(kind) << ", "
                            << (whole_group ? "SIGINT to the group" : "SIGKILL to the caller"));
  const subreaper reaper;
  int pipe_fds[2];
  REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
  const std::string request = std::string(method_name<Start>()) + " " + kind_name(kind);
  const pid_t caller = start_helper({.tag = "[fault_caller]",
                                     .request = request,
                                     .stdin_fd = pipe_fds[1],
                                     .own_process_group = whole_group});
  ::close(pipe_fds[1]);
  const std::set<int> reported = read_workers(pipe_fds[0], starts, tasks);
  // The caller's /dev/shm, held open: it stays readable after the caller and its namespace end.
  const bool private_shm = mount_namespace(std::to_string(caller)) != mount_namespace("self");
  const int shm = ::open(("/proc/" + std::to_string(caller) + "/root/dev/shm").c_str(),
                         O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  // Everything the caller started, the forkserver included, as /proc shows it now.
  const std::vector<int> below = descendants_of(caller);
  const std::set<int> watched(below.begin(), below.end());
  INFO(reported.size() << " workers reported, " << watched.size() << " processes below the caller");
  for (int pid : reported) {
    INFO("worker " << pid);
    CHECK(watched.count(pid) == 1);
  }
  const std::size_t servers = std::is_same_v<Start, parallel::start::forkserver> ? 1 : 0;
  CHECK(watched.size() == reported.size() + servers);

  const std::uint64_t killed_at = now_ns();
  REQUIRE(::kill(whole_group ? -caller : caller, signal) == 0);
  int status = 0;
  REQUIRE(::waitpid(caller, &status, 0) == caller);
  ::close(pipe_fds[0]);
  CHECK(WIFSIGNALED(status));
  expect_all_end(watched, killed_at);
  if (private_shm && shm >= 0) {
    const std::vector<std::string> left = entries_of(shm);
    INFO(left.size() << " entries left in the caller's /dev/shm, the first: "
                     << (left.empty() ? std::string() : left.front()));
    CHECK(left.empty());
  } else {
    WARN("no private mount namespace for the caller (unshare/mount refused): /dev/shm unchecked");
  }
  if (shm >= 0) ::close(shm);
}

/// What the helper does: PARALLEL_FAULT_HELPER is "<start method> <pool|per-call>".
template <class Start>
void serve_as_caller(const std::string& request) {
  if (request.rfind(std::string(method_name<Start>()) + " ", 0) != 0) return;
  private_dev_shm();
  run_caller<Start>(request.find(kind_name(caller_kind::pool_idle_and_busy)) != std::string::npos
                        ? caller_kind::pool_idle_and_busy
                        : caller_kind::per_call_map);
}

}  // namespace

TEST_CASE("faults helper: a caller that starts workers and waits to be killed", "[.fault_caller]") {
  const char* request = helper_request();
  if (request == nullptr) return;  // run by hand: nothing to do
  serve_as_caller<parallel::start::fork>(request);
  serve_as_caller<parallel::start::spawn>(request);
  serve_as_caller<parallel::start::forkserver>(request);
  ::_exit(3);  // an unknown request
}

TEMPLATE_TEST_CASE(
    "faults: when a pool's caller is killed, every process it started ends within 1 s",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: pool caller killed", 60s};
  kill_the_caller<TestType>(caller_kind::pool_idle_and_busy, 3, 2, SIGKILL, false);
}

TEMPLATE_TEST_CASE("faults: when a per-call map's caller is killed, its workers end within 1 s",
                   "[faults][processes]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: per-call caller killed", 60s};
  kill_the_caller<TestType>(caller_kind::per_call_map, 0, 2, SIGKILL, false);
}

TEMPLATE_TEST_CASE("faults: Ctrl-C to the caller's process group leaves no worker behind",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: Ctrl-C", 120s};
  kill_the_caller<TestType>(caller_kind::per_call_map, 0, 2, SIGINT, true);
  kill_the_caller<TestType>(caller_kind::pool_idle_and_busy, 3, 2, SIGINT, true);
}

#endif  // !_WIN32
