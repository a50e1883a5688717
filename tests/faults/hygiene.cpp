// What the process backends leave behind, and what their workers hold, with every start method:
// after 100 pool lifecycles and 100 per-call calls (some with a dead worker, a timeout or an
// abandoned imap; 30 of each with spawned workers under a sanitizer) no zombie and no descriptor is
// left; every descriptor the library holds is O_CLOEXEC; a worker holds its own channel (and arena)
// and none of the caller's other ones; nothing is created in /tmp or /dev/shm and no shell is run;
// and workers that flood stdout and stderr neither block a call nor lose or repeat output.
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <parallel/parallel.hpp>
#include <set>
#include <string>
#include <system_error>
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

int square(int x) { return x * x; }

int square_or_hang(int x) {
  if (x == 1) sleep_ms(10'000);
  return x * x;
}

// The rounds of a lifecycle test: 100, and 30 with spawned workers under a sanitizer, where
// each worker start runs a sanitized copy of this program (~0.4 s with ASan: 100 rounds took
// 84 s of CI's time per test). 30 rounds still run each case of the cycle of 10 three times.
template <class Start>
constexpr int lifecycle_rounds() {
  return std::is_same_v<Start, parallel::start::spawn> && test_support::under_sanitizer ? 30 : 100;
}

}  // namespace

TEMPLATE_TEST_CASE(
    "faults: 100 pool lifecycles (30 spawned under a sanitizer) leave no zombie and "
    "no descriptor behind",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: pool lifecycles", 120s};
  INFO(method_name<TestType>());
  reset_board();
  warm_up<TestType>();  // the forkserver, and its descriptor here, stay: they are no leak
  const leak_check leaks;
  for (int round = 0; round < lifecycle_rounds<TestType>(); ++round) {
    pool_of<TestType> pool{{.workers = 2}};
    const auto results = pool.map(square, numbers(8));
    if (results != squares(8)) FAIL_CHECK("round " << round << ": wrong results");
    switch (round % 10) {
      case 3:
        CHECK_THROWS_AS(pool.submit([](int) -> int { die(death::sigkill); }, 0).get(),
                        parallel::worker_died);
        break;
      case 6:
        CHECK_THROWS_AS(pool.map(square_or_hang, numbers(2), {.chunksize = 1, .timeout = 50ms}),
                        parallel::timeout_error);
        break;
      case 9:
        for (int r : pool.imap(square, numbers(100'000))) {
          if (r > 100) break;  // the view ends with jobs still in flight
        }
        break;
      default:
        break;
    }
  }
  leaks.verify();
}

TEMPLATE_TEST_CASE(
    "faults: 100 per-call calls (30 spawned under a sanitizer) leave no zombie and "
    "no descriptor behind",
    "[faults][processes]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: per-call calls", 120s};
  INFO(method_name<TestType>() << ": processes<Start>{.workers = 2}");
  reset_board();
  warm_up<TestType>();
  const leak_check leaks;
  per_call_of<TestType> runner{2};
  for (int round = 0; round < lifecycle_rounds<TestType>(); ++round) {
    switch (round % 10) {
      case 3:
        CHECK_THROWS_AS(runner.map(
                            [](int x) {
                              if (x == 1) die(death::sigkill);
                              return x;
                            },
                            numbers(4)),
                        parallel::worker_died);
        break;
      case 6:
        CHECK_THROWS_AS(runner.map(square_or_hang, numbers(2), {.chunksize = 1, .timeout = 50ms}),
                        parallel::timeout_error);
        break;
      case 9:
        for (int r : runner.imap(square, numbers(100'000))) {
          if (r > 100) break;
        }
        break;
      default:
        if (runner.map(square, numbers(8)) != squares(8))
          FAIL_CHECK("round " << round << ": wrong results");
        break;
    }
  }
  leaks.verify();
}

TEMPLATE_TEST_CASE("faults: every descriptor the library holds while it works is O_CLOEXEC",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: O_CLOEXEC", 60s};
  reset_board();
  // No warm_up: a forkserver started by this test has its channel checked too.
  const std::set<int> before = open_fds();
  int checked = 0;
  // Runs on the calling thread, while the workers and their channels exist.
  const auto check_new_descriptors = [&](std::size_t, std::size_t) {
    for (int fd : minus(open_fds(), before)) {
      INFO("descriptor " << fd << " -> " << fd_target(fd));
      CHECK(is_cloexec(fd));
      ++checked;
    }
  };
  {
    INFO(method_name<TestType>() << ": processes<Start>, during map and imap");
    per_call_of<TestType> runner{2};
    (void)runner.map(square, numbers(50), {.chunksize = 1, .progress = check_new_descriptors});
    for (int r : runner.imap(square, numbers(50), {.chunksize = 1})) {
      (void)r;
      check_new_descriptors(0, 0);
    }
  }
  {
    INFO(method_name<TestType>() << ": process_pool<Start>, idle, during map, imap and submit");
    pool_of<TestType> pool{{.workers = 2}};
    check_new_descriptors(0, 0);
    (void)pool.map(square, numbers(50), {.chunksize = 1, .progress = check_new_descriptors});
    for (int r : pool.imap(square, numbers(50), {.chunksize = 1})) {
      (void)r;
      check_new_descriptors(0, 0);
    }
    parallel::future<int> f = pool.submit(square, 3);
    check_new_descriptors(0, 0);
    CHECK(f.get() == 9);
  }
  INFO(checked << " descriptors checked");
  CHECK(checked > 0);
}

namespace {

/// What a worker holds (take_census), at which numbers its channel and arena are (its socket and
/// its memfd, -1: none), and how many other descriptors it has beyond standard input, output and
/// error and what this test program opens itself in every run (the board, test_support's copy of
/// stderr). Crosses back as its bytes.
struct worker_fds {
  fd_census kinds;
  int channel = -1;
  int arena = -1;
  int others = 0;
};

worker_fds census_in_worker(int) {
  sleep_ms(20);  // long enough that every worker of the pool runs one
  worker_fds seen{take_census(), -1, -1, 0};
  for (int fd : open_fds()) {
    const std::string target = fd_target(fd);
    if (fd <= 2 || fd == test_support::report_fd() || contains(target, board_name)) continue;
    if (seen.channel < 0 && target.rfind("socket:", 0) == 0)
      seen.channel = fd;
    else if (seen.arena < 0 && contains(target, "memfd:"))
      seen.arena = fd;
    else
      ++seen.others;
  }
  return seen;
}

/// What each start method's worker holds, exactly.
template <class Start>
void check_worker_fds(const std::vector<worker_fds>& seen) {
  for (const worker_fds& w : seen) {
    const fd_census& c = w.kinds;
    INFO("worker " << c.pid << ": " << c.sockets << " sockets (the first at fd " << w.channel
                   << "), " << c.memfds << " memfds (the first at fd " << w.arena << "), "
                   << c.eventfds << " eventfds, " << c.pidfds << " pidfds, " << w.others
                   << " other descriptors");
    // Its own channel, and only that: another worker's channel would hide that worker's death.
    CHECK(c.sockets == 1);
    if constexpr (std::is_same_v<Start, parallel::start::fork>) {
      // A forked worker closes every descriptor the library registered but its channel, its own
      // arena's too: the arena's mapping, made before the fork, is all it needs. What else it
      // holds is what the caller had open without the library (inherited by fork whether
      // close-on-exec or not): nothing to count here.
      CHECK(c.memfds == 0);
    } else {
      // A spawned worker (and one forked by the forkserver) receives its arena as a descriptor
      // and maps it itself, keeping the descriptor: its own, one. Another worker's arena would
      // outlive that worker.
      CHECK(c.memfds == 1);
      // And nothing else: posix_spawn hands over 0-2 and the two descriptors alone; the
      // forkserver's worker closes the server's own (its channel to the caller, its SIGCHLD
      // signalfd), so its channel and arena are at the numbers the server received them at
      // (5 and 6 today: an internal of the server, not asserted).
      CHECK(w.others == 0);
    }
    if constexpr (std::is_same_v<Start, parallel::start::spawn>) {
      // posix_spawn puts them at fixed numbers (linux/spawn.hpp).
      CHECK(w.channel == 3);
      CHECK(w.arena == 4);
    }
    CHECK(c.eventfds == 0);             // the pool's wake-up descriptor is the caller's
    CHECK(c.pidfds == 0);               // the caller's process watches
    CHECK(c.not_cloexec_library == 0);  // a program a task starts inherits none of them
  }
}

}  // namespace

TEMPLATE_TEST_CASE("faults: a worker holds its own channel, none of the other workers' or pools'",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: worker descriptors", 60s};
  reset_board();
  pool_of<TestType> first{{.workers = 3}};
  pool_of<TestType> second{{.workers = 2}};
  {
    INFO(method_name<TestType>() << ": the second of two pools");
    check_worker_fds<TestType>(second.map(census_in_worker, numbers(8), {.chunksize = 1}));
  }
  {
    INFO(method_name<TestType>() << ": a replacement worker of the first pool");
    CHECK_THROWS_AS(first.submit([](int) -> int { die(death::sigkill); }, 0).get(),
                    parallel::worker_died);
    check_worker_fds<TestType>(first.map(census_in_worker, numbers(12), {.chunksize = 1}));
  }
  {
    INFO(method_name<TestType>() << ": workers started per call while two pools run");
    per_call_of<TestType> runner{3};
    check_worker_fds<TestType>(runner.map(census_in_worker, numbers(12), {.chunksize = 1}));
  }
}

// --- nothing named in the file system
// -------------------------------------------------------------

namespace {

std::vector<std::string> entries(const char* dir) {
  std::vector<std::string> out;
  std::error_code ignored;
  for (const auto& e : std::filesystem::directory_iterator(dir, ignored))
    out.push_back(e.path().filename().string());
  return out;
}

std::vector<char> large_result(int x) {
  return std::vector<char>(std::size_t{256} << 10, static_cast<char>(x));  // through the arena
}

/// The fake shell, and where it records each run: a Perl script (no shell may run it).
constexpr const char* trap_dir = "/tmp/fault-shell";
constexpr const char* trap_log = "/tmp/fault-shell/ran";
constexpr const char* fake_shell =
    "#!/usr/bin/perl\n"
    "open(my $log, '>>', '/tmp/fault-shell/ran'); print $log \"$0 @ARGV\\n\"; exit 0;\n";

std::string file_contents(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Puts the fake shell over the programs /bin/sh and /bin/bash are (bind mounts, in this
/// process's private mount namespace): system(), popen(), execlp("sh") and a PATH lookup of sh
/// or bash all run it. False when it cannot be set up.
bool set_shell_trap() {
  if (::access("/usr/bin/perl", X_OK) != 0 || ::mkdir(trap_dir, 0700) != 0) return false;
  const std::string fake = std::string(trap_dir) + "/sh";
  {
    std::ofstream out(fake);
    out << fake_shell;
  }
  if (::chmod(fake.c_str(), 0755) != 0) return false;
  for (const char* shell : {"/bin/sh", "/bin/bash"}) {
    char real[PATH_MAX];
    if (::realpath(shell, real) == nullptr) continue;
    if (::mount(fake.c_str(), real, nullptr, MS_BIND, nullptr) != 0) return false;
  }
  return true;
}

/// Every verb, per call and on a pool, with large results, a timeout and a dead worker.
template <class Start>
void exercise() {
  per_call_of<Start> runner{2};
  (void)runner.map(large_result, numbers(20));
  for (auto& r : runner.imap(square, numbers(100))) (void)r;
  for (auto& r : runner.imap_unordered(square, numbers(100))) (void)r;
  try {
    (void)runner.map(square_or_hang, numbers(2), {.chunksize = 1, .timeout = 50ms});
  } catch (const parallel::timeout_error&) {
  }
  pool_of<Start> pool{{.workers = 2}};
  (void)pool.map(large_result, numbers(20));
  for (auto& r : pool.imap(square, numbers(100))) (void)r;
  (void)pool.submit(square, 2).get();
  try {
    (void)pool.submit([](int) -> int { die(death::sigkill); }, 0).get();
  } catch (const parallel::worker_died&) {
  }
}

/// Where files created in /tmp land in the helper: /tmp becomes an overlay whose lower layer is
/// the real /tmp (the test program itself may live there, as in a CI checkout under /tmp, and
/// its spawned workers must still find it and its libraries) and whose upper layer, which
/// receives every new file, is this directory on the helper's private /dev/shm.
constexpr const char* tmp_upper = "/dev/shm/.tmp-upper";
constexpr const char* tmp_work = "/dev/shm/.tmp-work";

/// The helper, in private /tmp (an overlay: see tmp_upper) and an empty private /dev/shm, with
/// the shell trap: exercise<Start>. Writes what it found to stdout ("note: ..." is no failure);
/// exits 0 when nothing was created and no shell ran, 1 when not, 2 when a call failed, 77 when
/// no private mount namespace can be made.
template <class Start>
void serve_in_private_tmp(const std::string& request) {
  if (request != method_name<Start>()) return;
  if (::unshare(CLONE_NEWNS) != 0 ||
      ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      ::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=16m") != 0 || ::mkdir(tmp_upper, 0755) != 0 ||
      ::mkdir(tmp_work, 0755) != 0)
    ::_exit(77);
  const std::string layers =
      std::string("lowerdir=/tmp,upperdir=") + tmp_upper + ",workdir=" + tmp_work;
  if (::mount("overlay", "/tmp", "overlay", 0, layers.c_str()) != 0) ::_exit(77);
  const bool trap = set_shell_trap();
  try {
    exercise<Start>();
  } catch (...) {
    ::_exit(2);
  }
  std::string found;
  for (const std::string& name : entries(tmp_upper))
    if ("/tmp/" + name != trap_dir) found += "/tmp/" + name + "\n";
  for (const std::string& name : entries("/dev/shm")) {
    const std::string path = "/dev/shm/" + name;
    if (path != tmp_upper && path != tmp_work) found += path + "\n";
  }
  if (!trap) {
    std::printf("note: no shell trap (no perl, or the bind mount was refused)\n");
  } else {
    const std::string ran = file_contents(trap_log);
    if (!ran.empty()) found += "a shell ran: " + ran;
    // The trap itself works: a shell run now is recorded.
    if (std::system("exit 0") != 0 || file_contents(trap_log) == ran)
      found += "the shell trap did not record system(\"exit 0\")\n";
  }
  std::fputs(found.c_str(), stdout);
  std::fflush(nullptr);
  ::_exit(found.empty() ? 0 : 1);
}

std::string read_all(int fd) {
  std::string out;
  char buffer[512];
  for (ssize_t n; (n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(out.size()))) > 0;)
    out.append(buffer, static_cast<std::size_t>(n));
  return out;
}

}  // namespace

TEST_CASE("faults helper: the library in private /tmp and /dev/shm, with a shell trap",
          "[.fault_private_tmp]") {
  const char* request = helper_request();
  if (request == nullptr) return;
  serve_in_private_tmp<parallel::start::fork>(request);
  serve_in_private_tmp<parallel::start::spawn>(request);
  serve_in_private_tmp<parallel::start::forkserver>(request);
  ::_exit(3);
}

// The check runs in a helper (this program run again) with a mount namespace of its own: a
// private /tmp (an overlay over the real one, whose new files are counted) and /dev/shm, and a
// fake shell over /bin/sh and /bin/bash.
TEMPLATE_TEST_CASE("faults: nothing is created in /tmp or /dev/shm, and no shell is run",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: /tmp, /dev/shm and shells", 60s};
  const int report = ::memfd_create("faults-report", MFD_CLOEXEC);
  REQUIRE(report >= 0);
  const pid_t helper = start_helper(
      {.tag = "[fault_private_tmp]", .request = method_name<TestType>(), .stdout_fd = report});
  const int status = wait_helper(helper, 30'000);
  const std::string found = read_all(report);
  ::close(report);
  REQUIRE(WIFEXITED(status));
  // Where isolation is known to work (scripts/test sets this in CI, which runs as root), a
  // refused namespace or a missing shell trap is a failure, not a warning: the check must run.
  const bool required = std::getenv("PARALLEL_REQUIRE_ISOLATION") != nullptr;
  if (required) {
    INFO(
        "PARALLEL_REQUIRE_ISOLATION is set: the private mount namespace and the shell trap must "
        "work (run as root, or unset it)\n"
        << found);
    CHECK(WEXITSTATUS(status) != 77);
    CHECK(found.rfind("note: ", 0) != 0);
  }
  if (WEXITSTATUS(status) == 77) {
    // No private mount namespace here: compare /dev/shm before and after instead (/tmp is
    // shared with compilers and other jobs on this machine, its listing would be noise).
    WARN("no private mount namespace (unshare/mount refused): checking /dev/shm only");
    const std::vector<std::string> shm_before = entries("/dev/shm");
    exercise<TestType>();
    CHECK(entries("/dev/shm") == shm_before);
    return;
  }
  if (found.rfind("note: ", 0) == 0) WARN(found);
  INFO("created, or ran:\n" << found);
  CHECK(WEXITSTATUS(status) == 0);
}

// --- floods of output ----------------------------------------------------------------------------

namespace {

constexpr std::size_t flood_bytes = std::size_t{1} << 20;

/// 1 MiB to stderr with write(2), 1 MiB to stdout through stdio's buffer.
int flood(int x) {
  const std::string block(64 << 10, 'e');
  for (std::size_t done = 0; done < flood_bytes; done += block.size())
    write_fully(2, block.data(), block.size());
  const std::string line(flood_bytes, 'o');
  std::fwrite(line.data(), 1, line.size(), stdout);
  return x;
}

constexpr const char* buffered_line = "<caller's buffered line>\n";

/// The helper (whose stdout and stderr are the test's files): a per-call map and a pool's map of
/// 4 flooding items each, with a line left in its own stdio buffer, which no worker may write
/// again. Exits 0, or 2 when a call failed.
template <class Start>
void serve_as_flooder(const std::string& request) {
  if (request != method_name<Start>()) return;
  std::fputs(buffered_line, stdout);
  int code = 0;
  try {
    if (parallel::map(parallel::processes<Start>{.workers = 2}, flood, numbers(4),
                      {.chunksize = 1}) != numbers(4))
      code = 2;
    pool_of<Start> pool{{.workers = 2}};
    if (pool.map(flood, numbers(4), {.chunksize = 1}) != numbers(4)) code = 2;
  } catch (...) {  // the pool's workers flush their stdio buffers as they end
    code = 2;
  }
  std::fflush(nullptr);
  ::_exit(code);
}

std::string contents_of(int fd) {
  struct stat st {};
  ::fstat(fd, &st);
  std::string out(static_cast<std::size_t>(st.st_size), '\0');
  (void)::pread(fd, out.data(), out.size(), 0);
  return out;
}

}  // namespace

TEST_CASE("faults helper: workers that flood stdout and stderr", "[.fault_flood]") {
  const char* request = helper_request();
  if (request == nullptr) return;
  serve_as_flooder<parallel::start::fork>(request);
  serve_as_flooder<parallel::start::spawn>(request);
  serve_as_flooder<parallel::start::forkserver>(request);
  ::_exit(3);
}

// The caller is a helper whose stdout and stderr are files here: with start::forkserver, the
// workers write where the server's output went when it started, the caller's at its first use.
TEMPLATE_TEST_CASE(
    "faults: workers flooding stdout and stderr neither block a call nor lose output",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: output floods", 60s};
  const int out = ::memfd_create("faults-stdout", MFD_CLOEXEC);
  const int err = ::memfd_create("faults-stderr", MFD_CLOEXEC);
  REQUIRE((out >= 0 && err >= 0));
  for (int fd : {out, err}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_APPEND);
  const std::uint64_t start = now_ns();
  const pid_t caller = start_helper({.tag = "[fault_flood]",
                                     .request = method_name<TestType>(),
                                     .stdout_fd = out,
                                     .stderr_fd = err});
  const int status = wait_helper(caller, 30'000);
  // A blocked call is the watchdog's to catch; the time is only reported (no timing asserts).
  INFO("8 MiB of stderr and 8 MiB of stdout in " << ms_since(start) << " ms, helper included");
  const std::string written = contents_of(out);
  const std::string errors = contents_of(err);
  ::close(out);
  ::close(err);
  INFO("the caller's stderr begins with: " << errors.substr(0, errors.find_first_of('e')));
  CHECK(status == 0);  // exited normally, every result right
  CHECK(errors.size() == 8 * flood_bytes);
  CHECK(errors.find_first_not_of('e') == std::string::npos);
  const std::string marker = buffered_line;
  CHECK(written.size() == 8 * flood_bytes + marker.size());
  std::size_t markers = 0;
  for (std::size_t at = written.find(marker); at != std::string::npos;
       at = written.find(marker, at + 1))
    ++markers;
  CHECK(markers == 1);
}

#endif  // !_WIN32
