// parallel::process (process.hpp): the child runs f with copies of its arguments and nothing
// else; exit codes say how it ended, as Python's Process.exitcode (code, or -signal); join is
// idempotent and the destructor joins; a moved-from process holds nothing; the child flushes what
// it printed, never re-flushes what the parent had buffered, runs no atexit handler, and dies
// with its parent.
#include <parallel/parallel.hpp>

#include "catch.hpp"
#include "test_support.hpp"

#if !defined(_WIN32)

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using test_support::watchdog;

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// A pipe the test makes before starting a child: the child writes, the parent reads.
class test_pipe {
 public:
  test_pipe() {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    read_end_ = fds[0];
    write_end_ = fds[1];
  }
  test_pipe(const test_pipe&) = delete;
  test_pipe& operator=(const test_pipe&) = delete;
  ~test_pipe() {
    close_write();
    if (read_end_ >= 0) ::close(read_end_);
  }

  int write_end() const { return write_end_; }

  /// For a child: writes all of `text` (a child has no REQUIRE to report with).
  void write(const std::string& text) const {
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(write_end_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(99);
      done += static_cast<std::size_t>(n);
    }
  }

  void close_write() {
    if (write_end_ >= 0) ::close(write_end_);
    write_end_ = -1;
  }

  /// Everything written until every write end is closed (the parent's is closed first).
  std::string read_all() {
    close_write();
    std::string out;
    char buffer[256];
    for (;;) {
      const ssize_t n = ::read(read_end_, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return out;
      out.append(buffer, static_cast<std::size_t>(n));
    }
  }

  /// For a child: blocks until the parent closes its write end. (The child first closes its own
  /// copy of it, or read() would never see the end.)
  void wait_in_child() {
    close_write();
    char byte;
    while (::read(read_end_, &byte, 1) < 0 && errno == EINTR) {
    }
  }

  /// What is in the pipe now, without waiting.
  std::string read_available() {
    const int flags = ::fcntl(read_end_, F_GETFL);
    ::fcntl(read_end_, F_SETFL, flags | O_NONBLOCK);
    std::string out;
    char buffer[256];
    for (ssize_t n; (n = ::read(read_end_, buffer, sizeof buffer)) > 0;)
      out.append(buffer, static_cast<std::size_t>(n));
    ::fcntl(read_end_, F_SETFL, flags);
    return out;
  }

 private:
  int read_end_ = -1;
  int write_end_ = -1;
};

[[noreturn]] void sleep_forever() {
  for (;;) std::this_thread::sleep_for(1s);
}

struct throws_when_copied {
  throws_when_copied() = default;
  throws_when_copied(const throws_when_copied&) { throw std::runtime_error("copy failed"); }
  throws_when_copied& operator=(const throws_when_copied&) = delete;
};

/// True once `pid` has ended (gone, or a zombie waiting for a reaper that is not us).
bool has_ended(int pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto state_at = line.rfind(") ");
  return !stat || (state_at != std::string::npos && line.size() > state_at + 2 &&
                   (line[state_at + 2] == 'Z' || line[state_at + 2] == 'X'));
}

}  // namespace

TEST_CASE("process: runs f with its arguments in a child process and exits 0", "[process]") {
  watchdog guard{"process runs f"};
  test_pipe out;
  const std::vector<int> captured{1, 2, 3};
  const std::string suffix = "!";
  parallel::process p{[&out, captured](int a, const std::string& s) {
                        int sum = a;
                        for (int x : captured) sum += x;
                        out.write(std::to_string(sum) + s + " " + std::to_string(::getpid()));
                      },
                      10, suffix};
  CHECK(p.pid() > 0);
  CHECK(p.pid() != ::getpid());
  p.join();
  CHECK(p.exit_code() == 0);
  CHECK(out.read_all() == "16! " + std::to_string(p.pid()));
}

TEST_CASE("process: a move-only argument is moved into the child", "[process]") {
  watchdog guard{"move-only argument"};
  parallel::process p{[](std::unique_ptr<int> code) { ::_exit(*code); }, std::make_unique<int>(7)};
  p.join();
  CHECK(p.exit_code() == 7);
}

TEST_CASE("process: f and its arguments are copied in the parent, before the fork", "[process]") {
  watchdog guard{"copy before fork"};
  const throws_when_copied argument;
  const auto started = [&] { parallel::process p{[](const throws_when_copied&) {}, argument}; };
  CHECK_THROWS_WITH(started(), "copy failed");
}

TEST_CASE("process: the exit code of exit(n) and _exit(n) in f is n", "[process]") {
  watchdog guard{"exit codes"};
  parallel::process fast{[] { ::_exit(3); }};
  parallel::process normal{[] { std::exit(4); }};
  fast.join();
  normal.join();
  CHECK(fast.exit_code() == 3);
  CHECK(normal.exit_code() == 4);
}

TEST_CASE("process: f that throws exits 1 and says what it raised on stderr", "[process]") {
  watchdog guard{"f throws"};
  test_pipe err;
  parallel::process p{[&err] {
    ::dup2(err.write_end(), STDERR_FILENO);
    throw std::out_of_range("index 7 of 3");
  }};
  p.join();
  CHECK(p.exit_code() == 1);
  CHECK(err.read_all() == "parallel::process: task raised std::out_of_range: index 7 of 3\n");

  test_pipe err2;
  parallel::process q{[&err2] {
    ::dup2(err2.write_end(), STDERR_FILENO);
    throw 42;
  }};
  q.join();
  CHECK(q.exit_code() == 1);
  CHECK(err2.read_all() == "parallel::process: task raised int\n");
}

TEST_CASE("process: kill() and terminate() end the child, and exit_code() is minus the signal",
          "[process]") {
  watchdog guard{"kill and terminate"};
  parallel::process killed{sleep_forever};
  parallel::process terminated{sleep_forever};
  killed.kill();
  terminated.terminate();
  killed.join();
  terminated.join();
  CHECK(killed.exit_code() == -SIGKILL);
  CHECK(terminated.exit_code() == -SIGTERM);
  // Once joined, the pid is no longer ours: signalling does nothing.
  killed.kill();
  terminated.terminate();
  CHECK(killed.exit_code() == -SIGKILL);
}

TEST_CASE(
    "process: terminate() right after the start ends the child, whatever the parent "
    "does with SIGTERM",
    "[process]") {
  // Catch2 catches SIGTERM in this program: a child running that handler would not end.
  watchdog guard{"terminate at once"};
  for (int i = 0; i < 50; ++i) {
    parallel::process p{sleep_forever};
    p.terminate();
    p.join();
    REQUIRE(p.exit_code() == -SIGTERM);
  }
}

extern "C" void count_signal(int) {}

TEST_CASE(
    "process: signals the parent catches have their default action in the child; ignored "
    "ones stay ignored",
    "[process]") {
  watchdog guard{"signal dispositions"};
  struct sigaction caught {};
  caught.sa_handler = count_signal;
  struct sigaction ignored {};
  ignored.sa_handler = SIG_IGN;
  struct sigaction old_usr1 {};
  struct sigaction old_usr2 {};
  REQUIRE(::sigaction(SIGUSR1, &caught, &old_usr1) == 0);
  REQUIRE(::sigaction(SIGUSR2, &ignored, &old_usr2) == 0);

  parallel::process raises_usr1{[] {
    ::raise(SIGUSR1);
    ::_exit(0);
  }};
  parallel::process raises_usr2{[] {
    ::raise(SIGUSR2);
    ::_exit(0);
  }};
  raises_usr1.join();
  raises_usr2.join();
  ::sigaction(SIGUSR1, &old_usr1, nullptr);
  ::sigaction(SIGUSR2, &old_usr2, nullptr);
  CHECK(raises_usr1.exit_code() == -SIGUSR1);
  CHECK(raises_usr2.exit_code() == 0);
}

TEST_CASE("process: abort() in f is exit code -SIGABRT", "[process]") {
  watchdog guard{"abort"};
  parallel::process p{[] {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    std::abort();
  }};
  p.join();
  CHECK(p.exit_code() == -SIGABRT);
}

TEST_CASE("process: is_alive() while f runs, not after, and join() is idempotent", "[process]") {
  watchdog guard{"is_alive and join"};
  test_pipe gate;
  parallel::process p{[&gate] { gate.wait_in_child(); }};
  CHECK(p.is_alive());
  CHECK(p.is_alive());
  gate.close_write();  // lets the child end
  p.join();
  CHECK_FALSE(p.is_alive());
  CHECK(p.exit_code() == 0);
  p.join();
  p.join();
  CHECK(p.join_for(0ms));
  CHECK_FALSE(p.is_alive());
  CHECK(p.exit_code() == 0);
}

TEST_CASE("process: is_alive() notices the end without join()", "[process]") {
  watchdog guard{"is_alive notices the end"};
  parallel::process p{[] { ::_exit(5); }};
  const auto deadline = clock_type::now() + 10s;
  while (p.is_alive() && clock_type::now() < deadline) std::this_thread::sleep_for(1ms);
  CHECK_FALSE(p.is_alive());
  CHECK(p.exit_code() == 5);
}

TEST_CASE("process: join_for() waits at most its timeout and tells whether the child ended",
          "[process]") {
  watchdog guard{"join_for", 60s};
  // How long a child that ends at once takes to start, end and be joined, in this run: the
  // bound for join_for() returning once the child ends (test_support.hpp).
  const double healthy_ms = test_support::time_ms([] {
    parallel::process quick{[] {}};
    quick.join();
  });
  test_pipe gate;
  parallel::process p{[&gate] { gate.wait_in_child(); }};
  const auto started = clock_type::now();
  CHECK_FALSE(p.join_for(50ms));
  CHECK(clock_type::now() - started >= 50ms);
  CHECK(p.is_alive());
  CHECK_FALSE(p.join_for(0ms));
  gate.close_write();
  const auto released = clock_type::now();
  CHECK(p.join_for(40s));  // long: one that waited it out instead would exceed the bound
  test_support::check_at_once("join_for() returned, counted from the child's release,",
                              test_support::ms_since(released), healthy_ms);
  CHECK(p.exit_code() == 0);
}

TEST_CASE("process: the destructor joins", "[process]") {
  watchdog guard{"destructor joins"};
  test_pipe out;
  const auto started = clock_type::now();
  {
    parallel::process p{[&out] {
      std::this_thread::sleep_for(100ms);
      out.write("done");
    }};
  }
  CHECK(clock_type::now() - started >= 100ms);
  CHECK(out.read_available() == "done");
}

TEST_CASE("process: a process moves, and the moved-from one holds nothing", "[process]") {
  watchdog guard{"move"};
  parallel::process a{[] { ::_exit(6); }};
  const int pid = a.pid();
  parallel::process b{std::move(a)};
  CHECK(b.pid() == pid);
  CHECK(a.pid() == 0);  // NOLINT(bugprone-use-after-move): a moved-from process is specified
  CHECK_FALSE(a.is_alive());
  a.join();
  CHECK(a.join_for(0ms));
  a.kill();
  CHECK_THROWS_AS(a.exit_code(), parallel::error);
  b.join();
  CHECK(b.exit_code() == 6);

  // Move assignment waits for the process held so far, then takes the other's.
  parallel::process c{[] { ::_exit(8); }};
  const int c_pid = c.pid();
  b = std::move(c);
  CHECK(b.pid() == c_pid);
  b.join();
  CHECK(b.exit_code() == 8);

  // A list of processes, as Python builds one: started, then joined in order.
  std::vector<parallel::process> processes;
  for (int i = 0; i < 10; ++i) processes.emplace_back([i] { ::_exit(i); });
  for (auto& p : processes) p.join();
  for (int i = 0; i < 10; ++i) CHECK(processes[static_cast<std::size_t>(i)].exit_code() == i);
}

TEST_CASE("process: exit_code() before the end throws parallel::error saying to join first",
          "[process]") {
  watchdog guard{"exit_code before the end"};
  parallel::process p{sleep_forever};
  try {
    (void)p.exit_code();
    FAIL("exit_code() of a running process did not throw");
  } catch (const parallel::error& e) {
    CHECK_THAT(e.what(), Catch::Contains("still running") && Catch::Contains("join()"));
  }
  p.kill();
  p.join();
  CHECK(p.exit_code() == -SIGKILL);
}

TEST_CASE("process: the child flushes what f wrote, never what the parent had buffered",
          "[process]") {
  watchdog guard{"flushing"};
  std::FILE* file = std::tmpfile();
  REQUIRE(file != nullptr);
  REQUIRE(std::setvbuf(file, nullptr, _IOFBF, 4096) == 0);
  std::fputs("parent\n", file);  // still in the parent's buffer when the child is made
  parallel::process p{[file] { std::fputs("child\n", file); }};  // f does not flush
  p.join();
  CHECK(p.exit_code() == 0);
  std::fflush(file);
  std::rewind(file);
  std::string contents;
  for (int c; (c = std::fgetc(file)) != EOF;) contents += static_cast<char>(c);
  std::fclose(file);
  CHECK(contents == "parent\nchild\n");
}

int atexit_fd = -1;

TEST_CASE("process: the child ends with _exit(): no atexit handler runs in it", "[process]") {
  watchdog guard{"no atexit in the child"};
  test_pipe out;
  atexit_fd = out.write_end();
  parallel::process p{[] {
    (void)::write(atexit_fd, "ran ", 4);
    std::atexit([] { (void)::write(atexit_fd, "atexit", 6); });
  }};
  p.join();
  CHECK(p.exit_code() == 0);
  CHECK(out.read_all() == "ran ");
}

#if defined(__linux__)
TEST_CASE("process: a child dies with its parent", "[process]") {
  watchdog guard{"child dies with its parent"};
  test_pipe out;
  parallel::process parent{[&out] {
    parallel::process child{[&out] {
      out.close_write();
      sleep_forever();
    }};
    out.write(std::to_string(child.pid()));
    ::_exit(0);  // leaves without joining the child
  }};
  parent.join();
  CHECK(parent.exit_code() == 0);
  const std::string grandchild = out.read_all();
  REQUIRE_FALSE(grandchild.empty());
  const int pid = std::stoi(grandchild);
  const auto deadline = clock_type::now() + 10s;
  while (!has_ended(pid) && clock_type::now() < deadline) std::this_thread::sleep_for(1ms);
  CHECK(has_ended(pid));
}
#endif

#endif  // !defined(_WIN32)
