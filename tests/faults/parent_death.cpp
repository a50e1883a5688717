// The caller of a pool or of a fork-per-call map is killed (SIGKILL), or its process group gets
// Ctrl-C (SIGINT): every worker, idle or busy, is gone within 1 s, and no zombie or IPC object
// is left behind.
//
// The caller is a child of the test. The test makes itself a child subreaper first, so the
// orphaned workers become its children: it sees each one end and reaps it (no init in between
// that may or may not reap zombies), and cleans up a worker that outlives the check.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <parallel/parallel.hpp>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;

constexpr double bound_ms = 1000;

// In the caller (a child of the test) and inherited by its workers: where they report.
int report_fd = -1;

/// Reports "worker <pid> started" (a positive pid) or "<pid> runs a task" (a negative one).
void report(int record) { write_fully(report_fd, &record, sizeof record); }

void report_start() { report(static_cast<int>(::getpid())); }

int report_and_sleep(int x) {
  report(-static_cast<int>(::getpid()));
  sleep_ms(60'000);
  return x;
}

/// The caller in the child: default dispositions for the signals the test framework catches,
/// as a program of its own would have.
void become_plain_program() {
  for (int sig : {SIGINT, SIGTERM, SIGSEGV, SIGABRT, SIGILL, SIGFPE, SIGBUS})
    ::signal(sig, SIG_DFL);
}

enum class caller_kind { pool_idle_and_busy, per_call_map };

[[noreturn]] void run_caller(caller_kind kind, int fd) {
  become_plain_program();
  report_fd = fd;
  try {
    if (kind == caller_kind::pool_idle_and_busy) {
      // Three workers: two run a long task, one is idle.
      fork_pool pool{{.workers = 3, .initializer = report_start}};
      auto a = pool.submit(report_and_sleep, 0);
      auto b = pool.submit(report_and_sleep, 1);
      sleep_ms(60'000);
    } else {
      (void)parallel::map(parallel::processes<parallel::start::fork>{.workers = 2},
                          report_and_sleep, numbers(2), {.chunksize = 1});
    }
  } catch (...) {
    ::_exit(2);
  }
  ::_exit(0);
}

/// Reads records until `starts` positive and `tasks` negative ones came (or 10 s passed);
/// returns the workers' pids.
std::set<int> read_workers(int fd, int starts, int tasks) {
  std::set<int> pids;
  int started = 0;
  int running = 0;
  const std::uint64_t begin = now_ns();
  while ((started < starts || running < tasks) && ms_since(begin) < 10'000) {
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

/// Waits (at most 5 s) until each of `pids`, orphaned to this process, ended and was reaped
/// here; checks each ended within bound_ms of `since_ns`. Kills and reaps the ones still alive.
void expect_all_end(const std::set<int>& pids, std::uint64_t since_ns) {
  std::map<int, double> ended_ms;
  while (ended_ms.size() < pids.size() && ms_since(since_ns) < 5000) {
    for (int pid : pids) {
      if (ended_ms.count(pid) != 0) continue;
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        ended_ms[pid] = ms_since(since_ns);
        INFO("worker " << pid << " ended after " << ended_ms[pid] << " ms, status " << status);
      }
    }
    sleep_ms(1);
  }
  for (int pid : pids) {
    INFO("worker " << pid);
    if (ended_ms.count(pid) == 0) {
      FAIL_CHECK("still running (state '" << process_state(pid) << "') 5 s after its caller");
      ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      continue;
    }
    INFO("ended " << ended_ms[pid] << " ms after its caller");
    CHECK(ended_ms[pid] < bound_ms);
  }
}

std::vector<std::string> shm_entries() {
  std::vector<std::string> out;
  std::error_code ignored;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ignored))
    out.push_back(e.path().filename().string());
  return out;
}

/// Starts the caller, waits for its workers, signals it (or its process group), and checks
/// that the caller and every worker end.
void kill_the_caller(caller_kind kind, int starts, int tasks, int signal, bool whole_group) {
  const std::vector<std::string> shm_before = shm_entries();
  const subreaper reaper;
  int pipe_fds[2];
  REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
  std::fflush(nullptr);
  const pid_t caller = ::fork();
  REQUIRE(caller >= 0);
  if (caller == 0) {
    ::close(pipe_fds[0]);
    if (whole_group) ::setpgid(0, 0);
    run_caller(kind, pipe_fds[1]);
  }
  if (whole_group) ::setpgid(caller, caller);  // either side may win the race; both ask
  ::close(pipe_fds[1]);
  const std::set<int> workers = read_workers(pipe_fds[0], starts, tasks);
  ::close(pipe_fds[0]);
  INFO(workers.size() << " workers");
  CHECK(workers.size() >= static_cast<std::size_t>(starts));

  const std::uint64_t killed_at = now_ns();
  REQUIRE(::kill(whole_group ? -caller : caller, signal) == 0);
  int status = 0;
  REQUIRE(::waitpid(caller, &status, 0) == caller);
  CHECK(WIFSIGNALED(status));
  expect_all_end(workers, killed_at);
  CHECK(shm_entries() == shm_before);
}

}  // namespace

TEST_CASE("faults: when a pool's caller is killed, its workers end within 1 s",
          "[faults][process_pool]") {
  watchdog guard{"faults: pool caller killed", 60s};
  if (test_support::under_thread_sanitizer) {
    WARN("skipped under ThreadSanitizer: the caller is a forked child that starts a pool thread");
    return;
  }
  kill_the_caller(caller_kind::pool_idle_and_busy, 3, 2, SIGKILL, false);
}

TEST_CASE("faults: when a fork-per-call map's caller is killed, its workers end within 1 s",
          "[faults][processes]") {
  watchdog guard{"faults: per-call caller killed", 60s};
  kill_the_caller(caller_kind::per_call_map, 0, 2, SIGKILL, false);
}

TEST_CASE("faults: Ctrl-C to the caller's process group leaves no worker behind",
          "[faults][processes][process_pool]") {
  watchdog guard{"faults: Ctrl-C", 60s};
  {
    INFO("a fork-per-call map");
    kill_the_caller(caller_kind::per_call_map, 0, 2, SIGINT, true);
  }
  if (test_support::under_thread_sanitizer) {
    WARN("pool part skipped under ThreadSanitizer: the caller would start a pool thread");
    return;
  }
  {
    INFO("a pool with idle and busy workers");
    kill_the_caller(caller_kind::pool_idle_and_busy, 3, 2, SIGINT, true);
  }
}

#endif  // !_WIN32
