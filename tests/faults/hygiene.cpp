// What the process backends leave behind, and what their workers hold: after 100 pool
// lifecycles and 100 fork-per-call calls (some with a dead worker, a timeout or an abandoned
// imap) no zombie and no descriptor is left; every descriptor the library holds is O_CLOEXEC;
// a worker holds its own channel and none of the caller's other ones; nothing is created in
// /tmp or /dev/shm; and workers that flood stdout and stderr neither block a call nor lose or
// repeat output.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
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

int square(int x) { return x * x; }

int square_or_hang(int x) {
  if (x == 1) sleep_ms(10'000);
  return x * x;
}

}  // namespace

TEST_CASE("faults: 100 pool lifecycles leave no zombie and no descriptor behind",
          "[faults][process_pool]") {
  watchdog guard{"faults: 100 pool lifecycles", 120s};
  reset_board();
  const leak_check leaks;
  for (int round = 0; round < 100; ++round) {
    fork_pool pool{{.workers = 2}};
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

TEST_CASE("faults: 100 fork-per-call calls leave no zombie and no descriptor behind",
          "[faults][processes]") {
  watchdog guard{"faults: 100 per-call calls", 120s};
  reset_board();
  const leak_check leaks;
  per_call runner{2};
  for (int round = 0; round < 100; ++round) {
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

TEST_CASE("faults: every descriptor the library holds while it works is O_CLOEXEC",
          "[faults][processes][process_pool]") {
  watchdog guard{"faults: O_CLOEXEC", 60s};
  reset_board();
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
    INFO("processes<start::fork>: during map and imap");
    per_call runner{2};
    (void)runner.map(square, numbers(50), {.chunksize = 1, .progress = check_new_descriptors});
    for (int r : runner.imap(square, numbers(50), {.chunksize = 1})) {
      (void)r;
      check_new_descriptors(0, 0);
    }
  }
  {
    INFO("process_pool<start::fork>: idle, during map, imap and submit");
    fork_pool pool{{.workers = 2}};
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

TEST_CASE("faults: a worker holds its own channel, none of the other workers' or pools'",
          "[faults][processes][process_pool]") {
  watchdog guard{"faults: worker descriptors", 60s};
  reset_board();
  const auto census = [](int) {
    sleep_ms(20);
    return take_census();
  };
  const auto check = [](const std::vector<fd_census>& seen) {
    for (const fd_census& c : seen) {
      INFO("worker " << c.pid << ": " << c.sockets << " sockets, " << c.memfds << " memfds, "
                     << c.eventfds << " eventfds, " << c.pidfds << " pidfds");
      CHECK(c.sockets == 1);   // another worker's channel would hide that worker's death
      CHECK(c.memfds <= 1);    // another worker's arena would outlive that worker
      CHECK(c.eventfds == 0);  // the pool's wake-up descriptor
      CHECK(c.pidfds == 0);    // the caller's process watches
      CHECK(c.not_cloexec_library == 0);
    }
  };
  fork_pool first{{.workers = 3}};
  fork_pool second{{.workers = 2}};
  {
    INFO("the second of two pools");
    check(second.map(census, numbers(8), {.chunksize = 1}));
  }
  {
    INFO("a replacement worker of the first pool");
    CHECK_THROWS_AS(first.submit([](int) -> int { die(death::sigkill); }, 0).get(),
                    parallel::worker_died);
    check(first.map(census, numbers(12), {.chunksize = 1}));
  }
  {
    INFO("workers forked per call while two pools run");
    per_call runner{3};
    check(runner.map(census, numbers(12), {.chunksize = 1}));
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

/// In a child with private, empty /tmp and /dev/shm: every verb, both fork modes, a dead worker
/// and a timeout. Exits 0 when both directories are still empty, 1 when not (their entries on
/// `report`), 2 when a call failed, 77 when no private mount namespace can be made.
[[noreturn]] void use_the_library_in_private_tmp(int report) {
  if (::unshare(CLONE_NEWNS) != 0 ||
      ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      ::mount("tmpfs", "/tmp", "tmpfs", 0, "size=16m") != 0 ||
      ::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=16m") != 0)
    ::_exit(77);
  try {
    per_call runner{2};
    (void)runner.map(large_result, numbers(20));
    for (auto& r : runner.imap(square, numbers(100))) (void)r;
    for (auto& r : runner.imap_unordered(square, numbers(100))) (void)r;
    try {
      (void)runner.map(square_or_hang, numbers(2), {.chunksize = 1, .timeout = 50ms});
    } catch (const parallel::timeout_error&) {
    }
    fork_pool pool{{.workers = 2}};
    (void)pool.map(large_result, numbers(20));
    for (auto& r : pool.imap(square, numbers(100))) (void)r;
    (void)pool.submit(square, 2).get();
    try {
      (void)pool.submit([](int) -> int { die(death::sigkill); }, 0).get();
    } catch (const parallel::worker_died&) {
    }
  } catch (...) {
    ::_exit(2);
  }
  std::string found;
  for (const char* dir : {"/tmp", "/dev/shm"})
    for (const std::string& name : entries(dir)) found += std::string(dir) + "/" + name + "\n";
  if (!found.empty()) write_fully(report, found.data(), found.size());
  ::_exit(found.empty() ? 0 : 1);
}

}  // namespace

TEST_CASE("faults: nothing is created in /tmp or /dev/shm", "[faults][processes][process_pool]") {
  watchdog guard{"faults: /tmp and /dev/shm", 60s};
  if (test_support::under_thread_sanitizer) {
    WARN("skipped under ThreadSanitizer: the check runs a pool (a thread) in a forked child");
    return;
  }
  reset_board();
  int pipe_fds[2];
  REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    use_the_library_in_private_tmp(pipe_fds[1]);
  }
  ::close(pipe_fds[1]);
  std::string found;
  char buffer[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;)
    found.append(buffer, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    // No private mount namespace here: compare /dev/shm before and after instead (/tmp is
    // shared with compilers and other jobs on this machine, its listing would be noise).
    WARN("no private mount namespace (unshare/mount refused): checking /dev/shm only");
    const std::vector<std::string> shm_before = entries("/dev/shm");
    {
      fork_pool pool{{.workers = 2}};
      (void)pool.map(large_result, numbers(20));
      (void)parallel::map(parallel::processes<parallel::start::fork>{.workers = 2}, large_result,
                          numbers(20));
    }
    CHECK(entries("/dev/shm") == shm_before);
    return;
  }
  INFO("created:\n" << found);
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

/// Points descriptor `target` at a fresh memfd until destroyed.
class captured_fd {
 public:
  explicit captured_fd(int target)
      : target_(target),
        saved_(::dup(target)),
        file_(::memfd_create("faults-capture", MFD_CLOEXEC)) {
    ::fcntl(file_, F_SETFL, ::fcntl(file_, F_GETFL) | O_APPEND);
    ::dup2(file_, target_);
  }
  captured_fd(const captured_fd&) = delete;
  captured_fd& operator=(const captured_fd&) = delete;
  ~captured_fd() {
    restore();
    ::close(file_);
  }
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, target_);
    ::close(saved_);
    saved_ = -1;
  }
  std::string contents() const {
    struct stat st {};
    ::fstat(file_, &st);
    std::string out(static_cast<std::size_t>(st.st_size), '\0');
    (void)::pread(file_, out.data(), out.size(), 0);
    return out;
  }

 private:
  int target_;
  int saved_;
  int file_;
};

}  // namespace

TEST_CASE("faults: workers flooding stdout and stderr neither block a call nor lose output",
          "[faults][processes][process_pool]") {
  watchdog guard{"faults: output floods", 60s};
  reset_board();
  std::cout.flush();
  std::fflush(nullptr);
  std::string out;
  std::string err;
  double took_ms = 0;
  {
    captured_fd captured_out(1);
    captured_fd captured_err(2);
    // Left in this process's stdio buffer at the fork: the workers must not write it again.
    std::fputs("<caller's buffered line>\n", stdout);
    const std::uint64_t start = now_ns();
    (void)parallel::map(parallel::processes<parallel::start::fork>{.workers = 2}, flood, numbers(4),
                        {.chunksize = 1});
    {
      fork_pool pool{{.workers = 2}};
      (void)pool.map(flood, numbers(4), {.chunksize = 1});
    }  // the pool's workers flush their stdio buffers as they end
    took_ms = ms_since(start);
    std::fflush(nullptr);
    out = captured_out.contents();
    err = captured_err.contents();
  }
  // A blocked call is the watchdog's to catch; the time is only reported (no timing asserts).
  INFO("8 MiB of stderr and 8 MiB of stdout in " << took_ms << " ms");
  CHECK(err.size() == 8 * flood_bytes);
  CHECK(err.find_first_not_of('e') == std::string::npos);
  const std::string marker = "<caller's buffered line>\n";
  CHECK(out.size() == 8 * flood_bytes + marker.size());
  std::size_t markers = 0;
  for (std::size_t at = out.find(marker); at != std::string::npos; at = out.find(marker, at + 1))
    ++markers;
  CHECK(markers == 1);
}

#endif  // !_WIN32
