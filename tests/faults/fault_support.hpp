// What the fault tests share: a page of shared memory that tasks in forked workers write and
// the test reads (when a worker died, which pids ran, how often an initializer ran), tasks that
// die in each of the ways a process can, the runners that let one check cover every start method
// per call and on a pool, and views of this process from /proc (open descriptors, children,
// every process below it). helper_process.hpp runs this test program again as a helper.
//
// The shared page is made while the test program starts (board_at_start), so every worker, on
// every start method, sees it: forked ones inherit it, spawned ones map it again (shared_board).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <parallel/parallel.hpp>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"

namespace fault_support {

// --- time and the shared page -----------------------------------------------------------------

// No fixed wall-clock bounds: "at once" is checked against a healthy call of the same shape timed
// in the same run, "does not wait for X" by making X take tens of seconds or by seeing that X has
// not happened yet (the rule and its numbers: test_support.hpp, "how long is too long").
using test_support::at_once_bound;
using test_support::check_at_once;
using test_support::time_ms;

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine.
inline std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// What a call threw: its what(), and when it was caught (now_ns).
struct caught {
  std::string message;
  std::uint64_t at_ns = 0;
};

/// Runs `call`, which must throw an E; returns what it threw and when. The test fails (REQUIRE)
/// when it returns normally; an exception of another type goes on to Catch, which reports it.
template <class E, class Call>
caught expect_throw(Call&& call) {
  try {
    std::forward<Call>(call)();
  } catch (const E& e) {
    return {e.what(), now_ns()};
  }
  FAIL("the call returned: it should have thrown");
  return {};
}

/// For messages (Catch2 v2 and v3 name their substring matcher differently).
inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

inline double ms_since(std::uint64_t start_ns) {
  return static_cast<double>(now_ns() - start_ns) / 1e6;
}

inline void sleep_ms(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1'000'000};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/// Written by tasks in worker processes, read by the test.
struct board {
  std::atomic<std::uint64_t> died_ns{0};  // when a task was about to die
  std::atomic<int> died_pid{0};           // the worker it died in
  std::atomic<int> initializer_runs{0};
  std::atomic<int> task_runs{0};
  std::atomic<int> mode{0};          // what the test asks of tasks or initializers
  std::atomic<int> starting_pid{0};  // the worker whose initializer ran last
  std::atomic<int> exit_runs{0};     // a pool's on_exit, in any worker
  std::atomic<long> hook_sum{0};     // what the hooks' arguments added up to
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

/// The page is a memfd that the test process maps and keeps open at a high descriptor (marked
/// close-on-exec, and left out of the worker census below); its path under /proc goes into the
/// environment as PARALLEL_TEST_BOARD. A forked worker inherits the mapping. A spawned worker,
/// or one forked by a forkserver, is a fresh run of this program: it opens that path (its
/// ancestor's descriptor) and maps the same page, then closes what it opened. So one board
/// serves every start method.
inline constexpr const char* board_variable = "PARALLEL_TEST_BOARD";
inline constexpr const char* board_name = "parallel-test-board";

inline board* map_board(int fd, bool fresh) {
  void* at = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (at == MAP_FAILED) std::abort();
  return fresh ? new (at) board() : static_cast<board*>(at);
}

inline board& shared_board() {
  static board* const page = [] {
    // A run of this program below the test process (a spawned worker, a forkserver's worker):
    // the board of the test process that started it.
    if (const char* path = std::getenv(board_variable)) {
      const int fd = ::open(path, O_RDWR | O_CLOEXEC);
      if (fd >= 0) {
        board* b = map_board(fd, false);
        ::close(fd);
        return b;
      }
    }
    // The test process (or one whose board is gone): a new board.
    const int made = ::memfd_create(board_name, MFD_CLOEXEC);
    if (made < 0 || ::ftruncate(made, 4096) != 0) std::abort();
    const int fd = ::fcntl(made, F_DUPFD_CLOEXEC, 900);  // out of the way of the library's
    if (fd < 0) std::abort();
    ::close(made);
    const std::string path = "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd);
    ::setenv(board_variable, path.c_str(), 1);
    return map_board(fd, true);
  }();
  return *page;
}

/// Made while this program starts, before any test runs: every worker and forkserver started
/// afterwards finds PARALLEL_TEST_BOARD in its environment, and every descriptor baseline a test
/// takes already includes the board's.
inline board& board_at_start = shared_board();

/// Clears the page.
inline board& reset_board() {
  board& b = shared_board();
  b.died_ns = 0;
  b.died_pid = 0;
  b.initializer_runs = 0;
  b.task_runs = 0;
  b.mode = 0;
  b.starting_pid = 0;
  b.exit_runs = 0;
  b.hook_sum = 0;
  return b;
}

/// An item that counts itself on the board, waits (up to `limit_ms`) until a second item has
/// started too, and returns its worker's pid: two such items with chunksize 1 can end early only
/// in two workers at once (the board's task_runs counts them: clear it first).
inline int meet_another_item(int limit_ms) {
  board& b = shared_board();
  b.task_runs.fetch_add(1);
  for (int waited = 0; b.task_runs.load() < 2 && waited < limit_ms; ++waited) sleep_ms(1);
  return static_cast<int>(::getpid());
}

// --- dying ---------------------------------------------------------------------------------------

enum class death { sigkill, sigsegv, abort_call, exit_3 };

inline const char* name_of(death how) {
  switch (how) {
    case death::sigkill:
      return "raise(SIGKILL)";
    case death::sigsegv:
      return "raise(SIGSEGV)";
    case death::abort_call:
      return "abort()";
    case death::exit_3:
      return "_exit(3)";
  }
  return "?";
}

/// What worker_died's message must say about each death.
inline const char* expected_cause(death how) {
  switch (how) {
    case death::sigkill:
      return "SIGKILL";
    case death::sigsegv:
      return "SIGSEGV";
    case death::abort_call:
      return "SIGABRT";
    case death::exit_3:
      return "exited with code 3";
  }
  return "?";
}

/// Records the time and pid, then ends this worker process. The worker inherited the test
/// framework's handlers for SIGSEGV and SIGABRT (it is a fork of the test): they go back to
/// the default first, so that the death is the plain signal and Catch does not print a report
/// from inside the worker.
[[noreturn]] inline void die(death how) {
  board& b = shared_board();
  b.died_pid = static_cast<int>(::getpid());
  b.died_ns = now_ns();
  switch (how) {
    case death::sigkill:
      ::raise(SIGKILL);
      break;
    case death::sigsegv:
      ::signal(SIGSEGV, SIG_DFL);
      ::raise(SIGSEGV);
      break;
    case death::abort_call:
      ::signal(SIGABRT, SIG_DFL);
      std::abort();
    case death::exit_3:
      ::_exit(3);
  }
  ::_exit(99);  // not reached
}

/// True once `pid` is no child of this process any more (the library reaped it).
inline bool reaped(int pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == -1 && errno == ECHILD;
}

// --- the start methods and the two modes of each, behind one interface -------------------------

template <class Start>
constexpr const char* method_name() {
  if constexpr (std::is_same_v<Start, parallel::start::fork>)
    return "start::fork";
  else if constexpr (std::is_same_v<Start, parallel::start::spawn>)
    return "start::spawn";
  else
    return "start::forkserver";
}

/// processes<Start>{.workers = n}: workers started for each call (forked per call, or a pool of
/// spawned or forkserver workers for the call).
template <class Start>
struct per_call_of {
  int workers = 2;

  template <class F, class Range>
  auto map(F&& f, Range&& items, const parallel::options& opts = {}) {
    return parallel::map(parallel::processes<Start>{.workers = workers}, std::forward<F>(f),
                         std::forward<Range>(items), opts);
  }
  template <class F, class Range>
  auto imap(F&& f, Range&& items, const parallel::options& opts = {}) {
    return parallel::imap(parallel::processes<Start>{.workers = workers}, std::forward<F>(f),
                          std::forward<Range>(items), opts);
  }
  template <class F, class Range>
  auto imap_unordered(F&& f, Range&& items, const parallel::options& opts = {}) {
    return parallel::imap_unordered(parallel::processes<Start>{.workers = workers},
                                    std::forward<F>(f), std::forward<Range>(items), opts);
  }
};

using per_call = per_call_of<parallel::start::fork>;

template <class Start>
using pool_of = parallel::process_pool<Start>;

/// start::forkserver starts its server (a child of this process that stays, with a descriptor
/// here) on first use: tests that compare descriptors and children with a baseline take it after
/// this.
template <class Start>
void warm_up() {
  if constexpr (std::is_same_v<Start, parallel::start::forkserver>) {
    const pool_of<Start> pool{{.workers = 1}};
  }
}

/// Runs check(runner) for processes<Start>{.workers = 2} and for a process_pool<Start> of 2
/// workers made for the check (after reset_board, so that forked workers see the shared page).
template <class Start, class Check>
void for_each_mode(Check check) {
  {
    INFO(method_name<Start>() << ": processes<Start>{.workers = 2}, workers started per call");
    reset_board();
    per_call_of<Start> runner{2};
    check(runner);
  }
  {
    INFO(method_name<Start>() << ": process_pool<Start>{{.workers = 2}}");
    reset_board();
    pool_of<Start> pool{{.workers = 2}};
    check(pool);
  }
}

inline std::vector<int> squares(int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(i * i);
  return out;
}

inline std::vector<int> numbers(int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(i);
  return out;
}

// --- this process, seen from /proc
// -----------------------------------------------------------------

/// The descriptors open in this process (without the one used to list them).
inline std::set<int> open_fds() {
  std::set<int> out;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd != own) out.insert(fd);
  }
  ::closedir(dir);
  return out;
}

/// What a descriptor refers to: "socket:[123]", "anon_inode:[eventfd]", "/memfd:... (deleted)".
inline std::string fd_target(int fd) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[512];
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n < 0) return "?";
  return std::string(target, static_cast<std::size_t>(n));
}

inline bool is_cloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

/// The pids of the children (alive or zombie) of process `pid` ("self": this process), sorted,
/// from every thread's children list: a pool's workers are children of the pool's I/O thread.
inline std::vector<int> children_of(const std::string& pid) {
  std::vector<int> out;
  const std::string tasks = "/proc/" + pid + "/task";
  DIR* dir = ::opendir(tasks.c_str());
  if (dir == nullptr) return out;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream in(tasks + "/" + entry->d_name + "/children");
    for (int child = 0; in >> child;) out.push_back(child);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

inline std::vector<int> children_of(int pid) { return children_of(std::to_string(pid)); }

/// The pids of this process's children (alive or zombie), sorted.
inline std::vector<int> children() { return children_of("self"); }

/// Every process below `pid` (children, theirs, ...), sorted: with start::forkserver, the
/// workers are children of the server, itself a child of this process.
inline std::vector<int> descendants_of(int pid) {
  std::vector<int> out;
  std::vector<int> next = children_of(pid);
  while (!next.empty()) {
    const int at = next.back();
    next.pop_back();
    out.push_back(at);
    for (int child : children_of(at)) next.push_back(child);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::vector<int> descendants() { return descendants_of(static_cast<int>(::getpid())); }

/// The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...), or 0 when there is no such
/// process.
inline char process_state(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const std::size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return 0;
  return stat[close + 2];
}

/// True when `pid` is a zombie and stays one for 10 s: nobody reaps it (a reaper slowed down by
/// a loaded machine still gets there).
inline bool lingering_zombie(int pid) {
  const std::uint64_t start = now_ns();
  while (process_state(pid) == 'Z') {
    if (ms_since(start) > 10'000) return true;
    sleep_ms(1);
  }
  return false;
}

// --- inside a worker: its channel ---------------------------------------------------------------

/// The AF_UNIX sockets open in this process. In a worker of these tests that is the library's
/// channel to its caller and nothing else (the test process itself opens no socket).
inline std::vector<int> unix_sockets() {
  std::vector<int> out;
  for (int fd : open_fds()) {
    int domain = 0;
    socklen_t size = sizeof domain;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &size) == 0 && domain == AF_UNIX)
      out.push_back(fd);
  }
  return out;
}

inline void write_fully(int fd, const void* data, std::size_t size) {
  const auto* at = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, at, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    at += n;
    size -= static_cast<std::size_t>(n);
  }
}

/// What the worker's descriptors are, counted by kind (a trivially copyable aggregate: it
/// crosses back as its bytes).
struct fd_census {
  int sockets = 0;
  int memfds = 0;
  int eventfds = 0;
  int pidfds = 0;
  int not_cloexec_library = 0;  // sockets, memfds, eventfds, pidfds without FD_CLOEXEC
  int pid = 0;
};

inline fd_census take_census() {
  fd_census c;
  c.pid = static_cast<int>(::getpid());
  for (int fd : open_fds()) {
    const std::string target = fd_target(fd);
    if (target.find(board_name) != std::string::npos) continue;  // the test's own, inherited
    bool library_kind = true;
    if (target.rfind("socket:", 0) == 0)
      ++c.sockets;
    else if (target.find("memfd:") != std::string::npos)
      ++c.memfds;
    else if (target == "anon_inode:[eventfd]")
      ++c.eventfds;
    else if (target == "anon_inode:[pidfd]")
      ++c.pidfds;
    else
      library_kind = false;
    if (library_kind && !is_cloexec(fd)) ++c.not_cloexec_library;
  }
  return c;
}

// --- leaks ------------------------------------------------------------------------------------

inline std::string describe_fds(const std::set<int>& fds) {
  std::string out;
  for (int fd : fds) out += std::to_string(fd) + " -> " + fd_target(fd) + "\n";
  return out;
}

inline std::set<int> minus(const std::set<int>& a, const std::set<int>& b) {
  std::set<int> out;
  for (int x : a)
    if (b.count(x) == 0) out.insert(x);
  return out;
}

/// Checks that this process holds the same descriptors, children and further descendants (a
/// forkserver's workers) as before, and that none of them is a zombie.
class leak_check {
 public:
  leak_check() : fds_(open_fds()), children_(as_set(children())), below_(as_set(descendants())) {}
  void verify() const {
    const std::set<int> now = open_fds();
    INFO("descriptors left open:\n" << describe_fds(minus(now, fds_)));
    INFO("descriptors closed:\n" << describe_fds(minus(fds_, now)));
    CHECK(now == fds_);
    const std::set<int> kids = as_set(children());
    INFO(kids.size() << " children now, " << children_.size() << " before");
    CHECK(kids == children_);
    const std::set<int> below = as_set(descendants());
    INFO(below.size() << " descendants now, " << below_.size() << " before");
    CHECK(below == below_);
    for (int pid : below) {
      INFO("descendant " << pid);
      CHECK(process_state(pid) != 'Z');
    }
    if (children_.empty()) {
      int status = 0;
      const int got = ::waitpid(-1, &status, WNOHANG);
      CHECK((got == -1 && errno == ECHILD));
    }
  }

 private:
  static std::set<int> as_set(const std::vector<int>& pids) { return {pids.begin(), pids.end()}; }

  std::set<int> fds_;
  std::set<int> children_;
  std::set<int> below_;
};

}  // namespace fault_support
