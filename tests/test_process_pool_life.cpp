// parallel::process_pool<start::fork> (process_pool.hpp), its life: the pool can be moved,
// shared by two threads, and finishes submitted tasks when destroyed; cancel takes back a queued
// task (or kills a running one), then chains on a result, void tasks work. The verbs and values
// are in test_process_pool.cpp, the failure cases in tests/faults/.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <list>
#include <parallel/parallel.hpp>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "process_test_support.hpp"
#include "test_support.hpp"

#if !defined(_WIN32)

namespace {

using namespace process_test_support;
using test_support::watchdog;

using namespace std::chrono_literals;
using fork_pool = parallel::process_pool<parallel::start::fork>;

/// For the destructor test: appends "<i>\n" to the file at `path` after a short sleep.
int append_line_slowly(const std::string& path, int i) {
  std::this_thread::sleep_for(50ms);
  std::FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) return -1;
  std::fprintf(file, "%d\n", i);
  std::fclose(file);
  return i;
}

/// A file name of this test run's own in the system's temporary directory, removed at the end.
class scratch_file {
 public:
  explicit scratch_file(const std::string& stem)
      : path_(std::filesystem::temp_directory_path() /
              (stem + "." + std::to_string(current_pid()) + ".txt")) {
    std::filesystem::remove(path_);
  }
  scratch_file(const scratch_file&) = delete;
  scratch_file& operator=(const scratch_file&) = delete;
  ~scratch_file() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  std::string path() const { return path_.string(); }
  std::vector<std::string> lines() const {
    std::ifstream in(path_);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace

// --- the pool object ----------------------------------------------------------------------------

TEST_CASE("process_pool: a moved pool keeps its workers", "[process_pool]") {
  watchdog guard{"process_pool: move"};
  fork_pool pool{{.workers = 2}};
  const int before = pool.submit([] { return current_pid(); }).get();
  fork_pool moved = std::move(pool);
  REQUIRE(moved.size() == 2);
  REQUIRE(moved.map(triple_plus_one, numbers(100)) == plain_loop(triple_plus_one, numbers(100)));
  std::set<int> pids;
  for (int i = 0; i < 20; ++i) pids.insert(moved.submit([] { return current_pid(); }).get());
  REQUIRE(pids.count(before) == 1);  // the same worker processes, not new ones
  fork_pool assigned{{.workers = 1}};
  assigned = std::move(moved);
  REQUIRE(assigned.size() == 2);
  REQUIRE(assigned.submit(triple_plus_one, 5).get() == 16);
}

TEST_CASE("process_pool: the destructor finishes the tasks already submitted", "[process_pool]") {
  watchdog guard{"process_pool: destructor"};
  scratch_file log{"parallel_test_process_pool_destructor"};
  // The same pool and tasks, each waited for before the pool goes: how long the work takes in
  // this run (test_support.hpp).
  const double healthy_ms = test_support::time_ms([] {
    const scratch_file other{"parallel_test_process_pool_destructor_waited"};
    fork_pool pool{{.workers = 2}};
    std::vector<parallel::future<int>> futures;
    for (int i = 0; i < 10; ++i)
      futures.push_back(pool.submit(append_line_slowly, other.path(), i));
    for (auto& f : futures) REQUIRE(f.get() >= 0);
  });
  const auto start = std::chrono::steady_clock::now();
  {
    fork_pool pool{{.workers = 2}};
    for (int i = 0; i < 10; ++i) {
      (void)pool.submit(append_line_slowly, log.path(), i);  // the future is dropped at once
    }
  }
  const double took_ms = test_support::ms_since(start);
  std::vector<std::string> lines = log.lines();
  std::sort(lines.begin(), lines.end());
  REQUIRE(lines == std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"});
  REQUIRE(took_ms >= 200);  // 10 tasks of 50 ms on 2 workers ran before the pool was gone
  test_support::check_at_once("pool made, 10 tasks submitted and the pool destroyed", took_ms,
                              healthy_ms);
}

TEST_CASE("process_pool: two threads use one pool at once", "[process_pool]") {
  watchdog guard{"process_pool: two threads", 60s};
  fork_pool pool{{.workers = 2}};
  const std::vector<int> items = numbers(5000);
  const std::vector<int> expected = plain_loop(triple_plus_one, items);
  const auto negate = [](int x) { return -x; };
  const std::vector<int> negated = plain_loop(negate, items);
  std::vector<std::vector<int>> first, second;
  std::thread other([&] {
    for (int round = 0; round < 5; ++round) second.push_back(pool.map(negate, items));
  });
  for (int round = 0; round < 5; ++round) {
    first.push_back(collect(pool.imap(triple_plus_one, items)));
  }
  other.join();
  REQUIRE(first.size() == 5);
  REQUIRE(second.size() == 5);
  for (const auto& r : first) REQUIRE(r == expected);
  for (const auto& r : second) REQUIRE(r == negated);
}

// --- cancel, then, void tasks ----------------------------------------------------------------

namespace {

void fail_for_negative(int x) {
  if (x < 0) throw std::invalid_argument("negative: " + std::to_string(x));
}

template <class Start>
void check_cancel(const char* name) {
  INFO(name);
  parallel::process_pool<Start> pool{{.workers = 1}};
  file_gate gate("cancel");
  auto running = pool.submit(&file_gate::pass, gate.path(), 1);
  REQUIRE(gate.wait_started());  // the only worker runs it
  std::vector<parallel::future<int>> behind;
  for (int i = 0; i < 6; ++i) behind.push_back(pool.submit([](int x) { return x * 10; }, i));
  // A pool sends a few jobs ahead to a busy worker; the last ones are still in its queue.
  REQUIRE(behind.back().cancel());
  REQUIRE(behind.back().is_ready());
  REQUIRE_FALSE(running.cancel());  // sent, and running: it goes on
  gate.open();
  REQUIRE(running.get() == 1);
  REQUIRE_THROWS_AS(behind.back().get(), parallel::cancelled_error);
  for (int i = 0; i < 5; ++i) REQUIRE(behind[static_cast<std::size_t>(i)].get() == i * 10);
  auto done = pool.submit([] { return 3; });
  REQUIRE(done.get() == 3);
  auto finished = pool.submit([] { return 4; });
  finished.wait();
  REQUIRE_FALSE(finished.cancel());
  REQUIRE(finished.get() == 4);
}

}  // namespace

TEST_CASE("process_pool: cancel takes back a task still queued, not one sent to a worker",
          "[process_pool][cancel]") {
  watchdog guard{"process_pool: cancel", 60s};
  check_cancel<parallel::start::fork>("start::fork");
  check_cancel<parallel::start::spawn>("start::spawn");
  check_cancel<parallel::start::forkserver>("start::forkserver");
}

namespace {

template <class Start>
void check_cancel_kill(const char* name) {
  INFO(name);
  parallel::process_pool<Start> pool{{.workers = 1}};
  file_gate gate("cancel-kill");
  auto running = pool.submit(&file_gate::pass, gate.path(), 1);
  REQUIRE(gate.wait_started());  // the only worker runs it, and would until the gate opens
  std::vector<parallel::future<int>> behind;
  for (int i = 0; i < 6; ++i) behind.push_back(pool.submit([](int x) { return x * 10; }, i));
  REQUIRE_FALSE(running.cancel());  // running: without kill it goes on
  REQUIRE(running.cancel(parallel::if_running::kill));
  REQUIRE(running.is_ready());
  REQUIRE(running.cancel(parallel::if_running::kill));  // again: still cancelled
  try {
    (void)running.get();
    FAIL("a killed task's future delivered a value");
  } catch (const parallel::cancelled_error& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains("worker process was killed and replaced"));
  }
  // The tasks queued behind it (sent ahead to the killed worker, or still in the pool) run in
  // its replacement.
  for (int i = 0; i < 6; ++i) REQUIRE(behind[static_cast<std::size_t>(i)].get() == i * 10);
  REQUIRE(pool.map([](int x) { return x + 1; }, std::vector<int>{1, 2, 3}) ==
          std::vector<int>{2, 3, 4});
  auto finished = pool.submit([] { return 4; });
  finished.wait();
  REQUIRE_FALSE(finished.cancel(parallel::if_running::kill));  // done: the result stands
  REQUIRE(finished.get() == 4);
  file_gate again("cancel-kill-again");
  auto held = pool.submit(&file_gate::pass, again.path(), 2);
  REQUIRE(again.wait_started());
  auto waiting = pool.submit([] { return 5; });
  REQUIRE(waiting.cancel(parallel::if_running::kill));  // not started: taken back, no kill
  REQUIRE_THROWS_AS(waiting.get(), parallel::cancelled_error);
  REQUIRE(held.cancel(parallel::if_running::kill));
  REQUIRE(pool.submit([] { return 6; }).get() == 6);
}

}  // namespace

TEST_CASE("process_pool: cancel(if_running::kill) stops a running task's worker and replaces it",
          "[process_pool][cancel]") {
  watchdog guard{"process_pool: cancel(kill)", 60s};
  check_cancel_kill<parallel::start::fork>("start::fork");
  check_cancel_kill<parallel::start::spawn>("start::spawn");
  check_cancel_kill<parallel::start::forkserver>("start::forkserver");
}

namespace {

/// Leaves a mark that it ran: the file `path`.ran.`x`.
int mark_ran(const std::string& path, int x) {
  std::ofstream(path + ".ran." + std::to_string(x)) << "ran\n";
  return x;
}

}  // namespace

TEST_CASE("process_pool: cancel takes back a task sent to a busy worker that has not started it",
          "[process_pool][cancel]") {
  watchdog guard{"process_pool: cancel in the worker's queue", 60s};
  fork_pool pool{{.workers = 1}};
  // Short tasks first: the pool then sends several tasks ahead to its worker.
  for (int i = 0; i < 50; ++i) REQUIRE(pool.submit([](int x) { return x; }, i).get() == i);
  file_gate gate("cancel-sent");
  auto running = pool.submit(&file_gate::pass, gate.path(), 1);
  std::vector<parallel::future<int>> behind;
  for (int i = 0; i < 6; ++i) behind.push_back(pool.submit(&mark_ran, gate.path(), i));
  REQUIRE(gate.wait_started());
  // Whether each was sent ahead to the worker or still waits in the pool, none has started.
  for (auto& f : behind) REQUIRE(f.cancel());
  gate.open();
  REQUIRE(running.get() == 1);
  for (auto& f : behind) REQUIRE_THROWS_AS(f.get(), parallel::cancelled_error);
  // One worker runs its tasks in order: after this one, every task sent before it ran or was
  // skipped.
  REQUIRE(pool.submit([] { return 7; }).get() == 7);
  for (int i = 0; i < 6; ++i)
    CHECK_FALSE(std::filesystem::exists(gate.path() + ".ran." + std::to_string(i)));
}

TEST_CASE("process_pool: cancelled futures are dropped, the pool ends cleanly",
          "[process_pool][cancel]") {
  watchdog guard{"process_pool: drop cancelled futures", 60s};
  fork_pool pool{{.workers = 1}};
  file_gate gate("cancel-drop");
  auto running = pool.submit(&file_gate::pass, gate.path(), 2);
  REQUIRE(gate.wait_started());
  int cancelled = 0;
  for (int i = 0; i < 50; ++i)
    cancelled += pool.submit([](int x) { return x; }, i).cancel() ? 1 : 0;
  REQUIRE(cancelled >= 45);  // at most a few went ahead to the busy worker
  gate.open();
  REQUIRE(running.get() == 2);
}

TEST_CASE("process_pool: then runs on the result, off the pool's I/O thread",
          "[process_pool][then]") {
  watchdog guard{"process_pool: then", 60s};
  fork_pool pool{{.workers = 2}};
  auto text = pool.submit(triple_plus_one, 4).then([](int r) { return std::to_string(r); });
  REQUIRE(text.get() == "13");
  // g may wait for another future of the same pool: it does not run on the I/O thread.
  auto outer = pool.submit(triple_plus_one, 1).then([&pool](int r) {
    return pool.submit(triple_plus_one, r).get();
  });
  REQUIRE(outer.get() == 13);
  // A task's exception skips g and reaches g's future, as remote_error.
  std::atomic<int> calls{0};
  auto failed = pool.submit([](int x) { return x > 0 ? throw std::out_of_range("x") : x; }, 1)
                    .then([&calls](int r) {
                      ++calls;
                      return r;
                    });
  REQUIRE_THROWS_AS(failed.get(), parallel::remote_error);
  REQUIRE(calls == 0);
  // future<void> from a void task, and then() on it.
  parallel::future<void> touched = pool.submit(fail_for_negative, 3);
  touched.get();
  REQUIRE(pool.submit(fail_for_negative, 1).then([] { return 9; }).get() == 9);
}

TEST_CASE("process_pool: f returning void: submit gives future<void>, map returns void",
          "[process_pool][void]") {
  watchdog guard{"process_pool: void f", 60s};
  fork_pool pool{{.workers = 2}};
  parallel::future<void> ok = pool.submit(fail_for_negative, 1);
  static_assert(std::is_same_v<decltype(ok), parallel::future<void>>);
  REQUIRE_NOTHROW(ok.get());
  auto failing = pool.submit(fail_for_negative, -4);
  std::string message;
  try {
    failing.get();
  } catch (const parallel::remote_error& e) {
    message = e.what();
  }
  REQUIRE(message.find("negative: -4") != std::string::npos);

  static_assert(std::is_void_v<decltype(pool.map(fail_for_negative, numbers(10)))>);
  pool.map(fail_for_negative, numbers(100));
  pool.starmap([](int a, int b) { fail_for_negative(a - b); },
               std::vector<std::tuple<int, int>>{{3, 1}, {5, 5}});
  std::vector<int> items = numbers(100);
  items[42] = -42;
  REQUIRE_THROWS_AS(pool.map(fail_for_negative, items), parallel::remote_error);
  int yielded = 0;
  for (auto&& nothing : pool.imap(fail_for_negative, numbers(100))) {
    (void)nothing;
    ++yielded;
  }
  REQUIRE(yielded == 0);
  REQUIRE_THROWS_AS(
      [&] {
        for (auto&& nothing : pool.imap_unordered(fail_for_negative, items)) (void)nothing;
      }(),
      parallel::remote_error);
  // Every void call ran on a pool still usable afterwards.
  REQUIRE(pool.submit(triple_plus_one, 2).get() == 7);
}

#endif  // !_WIN32
