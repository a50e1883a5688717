// Security: a program that starts an unrelated child with posix_spawn while a map runs (a shell
// command, a helper tool) hands that child none of the library's descriptors (sockets, memfds,
// pidfds, eventfds): they are all O_CLOEXEC, whichever start method made the workers. The child
// here is /bin/ls listing its own descriptors, compared with what it lists before any pool.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <sstream>
#include <string>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

extern char** environ;

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;

/// The descriptors a child started now with posix_spawn holds (ls's own listing of
/// /proc/self/fd, its directory descriptor included).
std::set<int> descriptors_of_a_spawned_child() {
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  char ls[] = "/bin/ls";
  char dir[] = "/proc/self/fd";
  char* argv[] = {ls, dir, nullptr};
  pid_t child = -1;
  const int spawned = ::posix_spawn(&child, ls, &actions, nullptr, argv, environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  std::string listing;
  char buffer[4096];
  for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    listing.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  REQUIRE(spawned == 0);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  REQUIRE(WIFEXITED(status));
  std::set<int> fds;
  std::istringstream in(listing);
  for (int fd = 0; in >> fd;) fds.insert(fd);
  return fds;
}

int square_of(int x) { return x * x; }

std::string listed(const std::set<int>& fds) {
  std::string text;
  for (int fd : fds) text += std::to_string(fd) + " ";
  return text;
}

}  // namespace

TEST_CASE("faults: a child spawned during a map inherits no descriptor of the library",
          "[faults][processes][process_pool][spawn][forkserver]") {
  watchdog guard{"faults: descriptors of an unrelated child", 120s};
  reset_board();
  const std::set<int> baseline = descriptors_of_a_spawned_child();
  INFO("a child spawned before any pool holds: " << listed(baseline));
  int checks = 0;
  bool checked = false;  // in the current call
  const auto check_child = [&](std::size_t done, std::size_t total) {
    if (checked || done < 10 || done == total) return;  // workers started, and still busy
    checked = true;
    const std::set<int> during = descriptors_of_a_spawned_child();
    INFO("a child spawned during the map holds: " << listed(during));
    CHECK(during == baseline);
    ++checks;
  };
  const std::vector<int> xs = numbers(200);
  const parallel::options opts{.chunksize = 1, .progress = check_child};
  const auto run = [&](auto&& map_call) {
    checked = false;
    (void)map_call();
  };
  run([&] {
    return parallel::map(parallel::processes<parallel::start::fork>{.workers = 2}, square_of, xs,
                         opts);
  });
  run([&] {
    return parallel::map(parallel::processes<parallel::start::spawn>{.workers = 2}, square_of, xs,
                         opts);
  });
  {
    parallel::process_pool<parallel::start::fork> pool{{.workers = 2}};
    run([&] { return pool.map(square_of, xs, opts); });
  }
  {
    parallel::process_pool<parallel::start::forkserver> pool{{.workers = 2}};
    run([&] { return pool.map(square_of, xs, opts); });
  }
  CHECK(checks == 4);
}

#endif  // !_WIN32
