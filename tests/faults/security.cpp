// Security: a program that starts an unrelated child with posix_spawn while a map runs (a shell
// command, a helper tool) hands that child none of the library's descriptors (sockets, memfds,
// pidfds, eventfds): they are all O_CLOEXEC, whichever start method made the workers. The child
// here is /bin/ls listing its own descriptors, compared with what it lists before any pool.
// Every process the library starts runs this program's own executable (no shell, no other
// program: hygiene.cpp traps /bin/sh too); and the forkserver's channel, like every channel of
// the library, is an unnamed socket pair that no other process can connect to or inherit.
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

extern char** environ;

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;

/// What `/bin/ls <option> /proc/self/fd`, started now with posix_spawn, prints: the
/// descriptors that child holds (its directory descriptor included); "" when it did not run to
/// its end. No Catch assertion: tasks in workers call it too.
std::string listing_of_a_spawned_child(const char* option) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return {};
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  char ls[] = "/bin/ls";
  std::string how = option;
  char dir[] = "/proc/self/fd";
  char* argv[] = {ls, how.data(), dir, nullptr};
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
  if (spawned != 0) return {};
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  // (ls -l may exit 1: its own directory descriptor is gone by the time it looks at it.)
  return WIFEXITED(status) ? listing : std::string();
}

/// The descriptors a child started now with posix_spawn holds.
std::set<int> descriptors_of_a_spawned_child() {
  const std::string listing = listing_of_a_spawned_child("-1");
  REQUIRE(!listing.empty());
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
  run([&] {
    return parallel::map(parallel::processes<parallel::start::forkserver>{.workers = 2}, square_of,
                         xs, opts);
  });
  {
    parallel::process_pool<parallel::start::fork> pool{{.workers = 2}};
    run([&] { return pool.map(square_of, xs, opts); });
  }
  {
    parallel::process_pool<parallel::start::spawn> pool{{.workers = 2}};
    run([&] { return pool.map(square_of, xs, opts); });
  }
  {
    parallel::process_pool<parallel::start::forkserver> pool{{.workers = 2}};
    run([&] { return pool.map(square_of, xs, opts); });
  }
  CHECK(checks == 6);
}

// --- children of a task -------------------------------------------------------------------------

namespace {

/// In a worker: what a program the task starts holds.
std::string listing_of_a_task_child(int) { return listing_of_a_spawned_child("-l"); }

}  // namespace

// A task that runs a program (a tool, a compiler) must not hand it its worker's channel or arena:
// a program that outlives the worker would hold the channel open.
TEMPLATE_TEST_CASE("faults: a program a task starts inherits none of its worker's descriptors",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: descriptors of a task's child", 60s};
  for_each_mode<TestType>([&](auto& runner) {
    const std::vector<std::string> listings =
        runner.map(listing_of_a_task_child, numbers(2), {.chunksize = 1});
    for (const std::string& listing : listings) {
      INFO("the task's child holds:\n" << listing);
      CHECK(contains(listing, "/proc/"));  // it ran and listed its own directory
      CHECK(!contains(listing, "socket:"));
      CHECK(!contains(listing, "memfd:"));
      CHECK(!contains(listing, "anon_inode:"));
    }
  });
}

// --- which programs run ---------------------------------------------------------------------

namespace {

/// The executable process `pid` runs ("self": this one), or "" when it has ended.
std::string exe_of(const std::string& pid) {
  char target[4096];
  const ssize_t n = ::readlink(("/proc/" + pid + "/exe").c_str(), target, sizeof target - 1);
  return n < 0 ? std::string() : std::string(target, static_cast<std::size_t>(n));
}

int slow_square(int x) {
  sleep_ms(1);
  return x * x;
}

}  // namespace

TEMPLATE_TEST_CASE("faults: every process the library starts runs this program's executable",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: executables of the workers", 60s};
  reset_board();
  const std::string self = exe_of("self");
  REQUIRE(!self.empty());
  std::set<int> seen;
  // Every process below this one, while workers run: none may run another program (a shell).
  const auto look = [&](std::size_t = 0, std::size_t = 0) {
    for (int pid : descendants()) {
      const std::string exe = exe_of(std::to_string(pid));
      if (exe.empty()) continue;  // it ended meanwhile
      INFO("process " << pid << " runs " << exe);
      CHECK(exe == self);
      seen.insert(pid);
    }
  };
  const parallel::options opts{.chunksize = 1, .progress = look};
  const std::vector<int> xs = numbers(40);
  {
    per_call_of<TestType> runner{2};
    (void)runner.map(slow_square, xs, opts);
    for (int r : runner.imap(slow_square, xs, {.chunksize = 1})) {
      (void)r;
      look();
    }
    for (int r : runner.imap_unordered(slow_square, xs, {.chunksize = 1})) {
      (void)r;
      look();
    }
  }
  {
    pool_of<TestType> pool{{.workers = 2}};
    look();
    (void)pool.map(slow_square, xs, opts);
    auto future = pool.submit(slow_square, 3);
    look();
    CHECK(future.get() == 9);
  }
  INFO(seen.size() << " processes seen");
  CHECK(seen.size() >= 4);  // two workers per call, two of the pool (and the forkserver)
}

// --- the forkserver's channel ---------------------------------------------------------------

namespace {

/// The inodes of the sockets process `pid` ("self": this one) holds, with their descriptors.
std::map<unsigned long, int> sockets_of(const std::string& pid) {
  std::map<unsigned long, int> out;
  const std::string dir = "/proc/" + pid + "/fd/";
  for (int fd = 0; fd < 1024; ++fd) {
    char target[256];
    const ssize_t n = ::readlink((dir + std::to_string(fd)).c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    const std::string link(target, static_cast<std::size_t>(n));
    if (link.rfind("socket:[", 0) == 0) out[std::stoul(link.substr(8))] = fd;
  }
  return out;
}

/// The AF_UNIX sockets of this network namespace (/proc/net/unix), by inode: "" for an unnamed
/// one, the path for one bound to a file, "@name" for an abstract one.
std::map<unsigned long, std::string> unix_socket_names() {
  std::map<unsigned long, std::string> out;
  std::ifstream in("/proc/net/unix");
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string num, refs, protocol, flags, type, state;
    unsigned long inode = 0;
    fields >> num >> refs >> protocol >> flags >> type >> state >> inode;
    std::string path;
    std::getline(fields >> std::ws, path);
    out[inode] = path;
  }
  return out;
}

/// The flags of descriptor `fd` of process `pid` (/proc/<pid>/fdinfo), O_CLOEXEC among them.
int open_flags_of(const std::string& pid, int fd) {
  std::ifstream in("/proc/" + pid + "/fdinfo/" + std::to_string(fd));
  for (std::string key; in >> key;) {
    if (key == "flags:") {
      std::string octal;
      in >> octal;
      return static_cast<int>(std::stol(octal, nullptr, 8));
    }
  }
  return -1;
}

/// The pids of the worker running this task and of its parent (the forkserver).
struct lineage {
  int pid;
  int parent;
};

lineage whose(int) {
  sleep_ms(100);  // one item in each worker
  return {static_cast<int>(::getpid()), static_cast<int>(::getppid())};
}

}  // namespace

TEST_CASE("faults: the forkserver's channel is an unnamed socket no other process holds",
          "[faults][forkserver]") {
  watchdog guard{"faults: the forkserver's channel", 60s};
  // The check can fail: a socket bound to an abstract name is seen with its name.
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(probe >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string name = "parallel-faults-probe-" + std::to_string(::getpid());
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  REQUIRE(::bind(probe, reinterpret_cast<const sockaddr*>(&address),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())) == 0);
  struct stat probe_stat {};
  REQUIRE(::fstat(probe, &probe_stat) == 0);
  const auto probe_inode = static_cast<unsigned long>(probe_stat.st_ino);
  CHECK(unix_socket_names()[probe_inode] == "@" + name);
  ::close(probe);

  parallel::process_pool<parallel::start::forkserver> pool{{.workers = 2}};
  const std::vector<lineage> seen = pool.map(whose, numbers(2), {.chunksize = 1});
  REQUIRE(seen.size() == 2);
  const std::string server = std::to_string(seen[0].parent);
  CHECK(seen[1].parent == seen[0].parent);
  const std::vector<int> mine = children();
  CHECK(std::count(mine.begin(), mine.end(), seen[0].parent) == 1);  // the server is my child

  const std::map<unsigned long, std::string> names = unix_socket_names();
  std::map<std::string, std::map<unsigned long, int>> holders;  // who -> its sockets
  holders["the forkserver " + server] = sockets_of(server);
  for (const lineage& w : seen)
    holders["worker " + std::to_string(w.pid)] = sockets_of(std::to_string(w.pid));
  holders["the caller"] = sockets_of("self");
  std::set<unsigned long> everyone;
  for (const auto& [who, sockets] : holders) {
    INFO(who << " holds " << sockets.size() << " sockets");
    if (who != "the caller") CHECK(sockets.size() == 1);  // its one channel
    for (const auto& [inode, fd] : sockets) {
      INFO("descriptor " << fd << ", socket inode " << inode);
      REQUIRE(names.count(inode) == 1);      // an AF_UNIX socket
      CHECK(names.at(inode).empty());        // no path, no abstract name: nothing to connect to
      CHECK(everyone.insert(inode).second);  // no end of a channel is held twice
    }
  }
  // The server's descriptors (but 0-2) are all O_CLOEXEC, and a child started now holds none of
  // the channels' ends.
  for (int fd = 3; fd < 1024; ++fd) {
    const int flags = open_flags_of(server, fd);
    if (flags < 0) continue;
    INFO("the forkserver's descriptor " << fd);
    CHECK((flags & O_CLOEXEC) != 0);
  }
  const std::string child = listing_of_a_spawned_child("-l");
  REQUIRE(!child.empty());
  std::istringstream listing(child);
  for (std::string line; std::getline(listing, line);) {
    const std::size_t at = line.find("socket:[");
    if (at == std::string::npos) continue;
    INFO("a child started with posix_spawn holds " << line);
    CHECK(everyone.count(std::stoul(line.substr(at + 8))) == 0);
  }
  CHECK(pool.map(square_of, numbers(10)) == squares(10));
}

#endif  // !_WIN32
