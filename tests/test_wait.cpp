// parallel::as_completed, wait_any and wait_all (wait.hpp): futures are yielded in the order they
// finish, whatever their pool (threads, processes, both in one range); wait_any returns nullopt
// when nothing finished in time and the index of a finished future otherwise; wait_all says
// whether all finished in time. The order is made by the tests (each task waits at a gate the
// test opens), never by sleeping.
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <optional>
#include <parallel/parallel.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"
#if !defined(_WIN32)
#include "process_test_support.hpp"
#endif

namespace {

using test_support::watchdog;
using namespace std::chrono_literals;

/// n gates that thread tasks wait at (bounded), each task returning its own number.
struct thread_gates {
  explicit thread_gates(std::size_t n) : gates(n) {
    for (auto& g : gates) opened.push_back(g.get_future().share());
  }
  std::vector<std::promise<void>> gates;
  std::vector<std::shared_future<void>> opened;
  auto task(std::size_t i) const {
    return [gate = opened[i], i] {
      return gate.wait_for(10s) == std::future_status::ready ? static_cast<int>(i) : -1;
    };
  }
};

}  // namespace

TEST_CASE("as_completed: yields thread futures in the order they finish", "[wait][as_completed]") {
  watchdog guard{"as_completed: thread futures in completion order"};
  parallel::thread_pool pool{3};
  thread_gates gates(3);
  std::vector<parallel::future<int>> futs;
  for (std::size_t i = 0; i < 3; ++i) futs.push_back(pool.submit(gates.task(i)));
  // Finish order 2, 0, 1: each gate is opened after the previous result was yielded.
  const std::array<std::size_t, 3> order{2, 0, 1};
  gates.gates[order[0]].set_value();
  std::vector<int> seen;
  for (parallel::future<int>& f : parallel::as_completed(futs)) {
    REQUIRE(f.is_ready());
    seen.push_back(f.get());
    if (seen.size() < order.size()) gates.gates[order[seen.size()]].set_value();
  }
  REQUIRE(seen == std::vector<int>{2, 0, 1});
}

TEST_CASE("as_completed: finished futures first, cancelled ones too, empty ones skipped",
          "[wait][as_completed]") {
  watchdog guard{"as_completed: finished, cancelled, empty"};
  parallel::thread_pool pool{1};
  thread_gates gates(1);
  std::vector<parallel::future<int>> futs;
  futs.push_back(pool.submit(gates.task(0)));      // holds the only worker
  futs.push_back(pool.submit([] { return 10; }));  // queued: cancelled below
  futs.push_back(pool.submit([] { return 20; }));  // queued: runs after the gate opens
  futs.emplace_back();                             // empty: skipped
  REQUIRE(futs[1].cancel());
  int cancelled = 0;
  std::vector<int> values;
  for (auto& f : parallel::as_completed(futs)) {
    if (values.empty() && cancelled == 0) {
      // The cancelled future is the only one done: it comes first.
      REQUIRE_THROWS_AS(f.get(), parallel::cancelled_error);
      ++cancelled;
      gates.gates[0].set_value();
      continue;
    }
    values.push_back(f.get());
  }
  REQUIRE(cancelled == 1);
  REQUIRE(values == std::vector<int>{0, 20});  // one worker: in the order they ran
}

TEST_CASE("as_completed: leaving the loop early, and a timeout", "[wait][as_completed]") {
  watchdog guard{"as_completed: break and timeout"};
  parallel::thread_pool pool{2};
  thread_gates gates(2);
  std::vector<parallel::future<int>> futs;
  futs.push_back(pool.submit([] { return 7; }));
  futs.push_back(pool.submit(gates.task(1)));
  for (auto& f : parallel::as_completed(futs)) {
    REQUIRE(f.get() == 7);
    break;  // the range takes its hooks back from the future still running
  }
  // The one still blocked: a timeout ends the loop with timeout_error.
  bool timed_out = false;
  try {
    for (auto& f : parallel::as_completed(futs, 20ms)) (void)f;
  } catch (const parallel::timeout_error&) {
    timed_out = true;
  }
  REQUIRE(timed_out);
  gates.gates[1].set_value();
  REQUIRE(futs[1].get() == 1);
}

TEST_CASE("as_completed: many futures, each yielded once", "[wait][as_completed]") {
  watchdog guard{"as_completed: many futures"};
  parallel::thread_pool pool{2};
  std::vector<parallel::future<int>> futs;
  for (int i = 0; i < 2000; ++i) futs.push_back(pool.submit([i] { return i; }));
  std::vector<int> count(2000, 0);
  for (auto& f : parallel::as_completed(futs)) ++count[static_cast<std::size_t>(f.get())];
  REQUIRE(count == std::vector<int>(2000, 1));
}

TEST_CASE("as_completed: inside a pool task, waiting helps the pool", "[wait][as_completed]") {
  watchdog guard{"as_completed: inside a task"};
  parallel::thread_pool pool{1};
  // One worker: the inner tasks can only run if the waiting task runs them itself.
  auto outer = pool.submit([&pool] {
    std::vector<parallel::future<int>> inner;
    for (int i = 1; i <= 10; ++i) inner.push_back(pool.submit([i] { return i; }));
    int sum = 0;
    for (auto& f : parallel::as_completed(inner)) sum += f.get();
    const bool all = parallel::wait_all(inner);  // all empty now: nothing to wait for
    return all ? sum : -1;
  });
  REQUIRE(outer.get() == 55);
}

TEST_CASE("wait_any: nullopt on timeout, then the index of the one that finished",
          "[wait][wait_any]") {
  watchdog guard{"wait_any"};
  parallel::thread_pool pool{3};
  thread_gates gates(3);
  std::vector<parallel::future<int>> futs;
  for (std::size_t i = 0; i < 3; ++i) futs.push_back(pool.submit(gates.task(i)));
  REQUIRE(parallel::wait_any(futs, 20ms) == std::nullopt);  // every gate is closed
  REQUIRE(parallel::wait_any(futs, 0ms) == std::nullopt);
  gates.gates[1].set_value();
  const std::optional<std::size_t> first = parallel::wait_any(futs, 10s);
  REQUIRE(first == std::optional<std::size_t>(1));
  REQUIRE(futs[1].is_ready());
  REQUIRE(futs[1].get() == 1);
  gates.gates[0].set_value();
  REQUIRE(parallel::wait_any(futs) == std::optional<std::size_t>(0));  // [1] is empty now
  gates.gates[2].set_value();
  REQUIRE(futs[0].get() == 0);
  REQUIRE(futs[2].get() == 2);
  REQUIRE(parallel::wait_any(futs, 10ms) == std::nullopt);  // no future holds a state
}

TEST_CASE("wait_all: false on timeout, true once all finished", "[wait][wait_all]") {
  watchdog guard{"wait_all"};
  parallel::thread_pool pool{2};
  thread_gates gates(2);
  std::vector<parallel::future<int>> futs;
  futs.push_back(pool.submit(gates.task(0)));
  futs.push_back(pool.submit(gates.task(1)));
  gates.gates[0].set_value();
  REQUIRE_FALSE(parallel::wait_all(futs, 20ms));  // [1] still waits at its gate
  gates.gates[1].set_value();
  REQUIRE(parallel::wait_all(futs, 10s));
  REQUIRE(futs[0].is_ready());
  REQUIRE(futs[1].is_ready());
  REQUIRE(futs[0].get() + futs[1].get() == 1);
  REQUIRE(parallel::wait_all(futs));  // empty futures: nothing to wait for
}

#if !defined(_WIN32)

namespace {
using process_test_support::file_gate;
using fork_pool = parallel::process_pool<parallel::start::fork>;
}  // namespace

TEST_CASE("as_completed: yields process futures in the order they finish",
          "[wait][as_completed][process_pool]") {
  watchdog guard{"as_completed: process futures", 60s};
  fork_pool pool{{.workers = 3}};
  std::vector<std::unique_ptr<file_gate>> gates;
  std::vector<parallel::future<int>> futs;
  for (int i = 0; i < 3; ++i) {
    gates.push_back(std::make_unique<file_gate>("as_completed"));
    futs.push_back(pool.submit(&file_gate::pass, gates.back()->path(), i));
  }
  const std::array<std::size_t, 3> order{1, 2, 0};
  gates[order[0]]->open();
  std::vector<int> seen;
  for (parallel::future<int>& f : parallel::as_completed(futs)) {
    seen.push_back(f.get());
    if (seen.size() < order.size()) gates[order[seen.size()]]->open();
  }
  REQUIRE(seen == std::vector<int>{1, 2, 0});
}

TEST_CASE("wait_any and wait_all: process and thread futures in one range",
          "[wait][wait_any][process_pool]") {
  watchdog guard{"wait_any: process and thread futures", 60s};
  fork_pool procs{{.workers = 1}};
  parallel::thread_pool threads{1};
  thread_gates gates(1);
  file_gate gate("wait_any");
  std::vector<parallel::future<int>> futs;
  futs.push_back(procs.submit(&file_gate::pass, gate.path(), 5));
  futs.push_back(threads.submit(gates.task(0)));
  REQUIRE(gate.wait_started());
  REQUIRE(parallel::wait_any(futs, 20ms) == std::nullopt);
  REQUIRE_FALSE(parallel::wait_all(futs, 20ms));
  gate.open();
  REQUIRE(parallel::wait_any(futs, 10s) == std::optional<std::size_t>(0));
  REQUIRE_FALSE(parallel::wait_all(futs, 20ms));
  gates.gates[0].set_value();
  REQUIRE(parallel::wait_all(futs, 10s));
  REQUIRE(futs[0].get() == 5);
  REQUIRE(futs[1].get() == 0);
}

#endif
