// thread_pool::submit and parallel::future (future.hpp): Python's apply_async. get returns the
// value or rethrows f's exception with its own type; wait_for and valid behave as std::future's;
// tasks may submit and wait for tasks; a pool runs every submitted task before it is destroyed.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <parallel/parallel.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

namespace {

using test_support::watchdog;

using namespace std::chrono_literals;

struct task_failed {
  std::string reason;
};

int add(int a, int b) { return a + b; }

/// fib(n) where fib(n - 1) is a submitted task that the caller (itself maybe a task) waits for.
struct submitted_fib {
  parallel::thread_pool* pool;
  long operator()(int n) const {
    if (n < 2) return n;
    auto first = pool->submit(*this, n - 1);
    const long second = (*this)(n - 2);
    return first.get() + second;
  }
};

}  // namespace

TEST_CASE("future: get returns the task's value", "[future]") {
  watchdog guard{"future: get returns the task's value"};
  parallel::thread_pool pool{2};
  REQUIRE(pool.submit(add, 1, 2).get() == 3);
  REQUIRE(pool.submit([] { return std::string{"done"}; }).get() == "done");
  const std::string prefix = "item ";
  auto labelled = pool.submit([&prefix](int i) { return prefix + std::to_string(i); }, 7);
  REQUIRE(labelled.get() == "item 7");
}

TEST_CASE("future: get rethrows the task's exception with its own type", "[future][errors]") {
  watchdog guard{"future: get rethrows the task's exception"};
  parallel::thread_pool pool{2};
  auto custom = pool.submit([]() -> int { throw task_failed{"no input"}; });
  std::string reason;
  try {
    (void)custom.get();
  } catch (const task_failed& e) {
    reason = e.reason;
  }
  REQUIRE(reason == "no input");

  auto standard = pool.submit([] { throw std::out_of_range{"index 9"}; });
  REQUIRE_THROWS_AS(standard.get(), std::out_of_range);

  // The pool is still usable.
  REQUIRE(pool.submit(add, 20, 22).get() == 42);
}

TEST_CASE("future: wait_for reports timeout while the task is blocked, then ready", "[future]") {
  watchdog guard{"future: wait_for"};
  parallel::thread_pool pool{2};
  std::promise<void> gate;
  std::shared_future<void> opened = gate.get_future().share();
  auto fut = pool.submit([opened] {
    // Bounded, so that a failing test cannot hang the pool's destructor.
    return opened.wait_for(10s) == std::future_status::ready ? 1 : 0;
  });
  REQUIRE(fut.valid());
  REQUIRE(fut.wait_for(20ms) == std::future_status::timeout);
  REQUIRE(fut.wait_for(0s) == std::future_status::timeout);
  REQUIRE_FALSE(fut.is_ready());
  gate.set_value();
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  REQUIRE(fut.wait_for(0s) == std::future_status::ready);
  REQUIRE(fut.is_ready());
  REQUIRE(fut.get() == 1);
  REQUIRE_FALSE(fut.is_ready());  // get() empties the future
}

TEST_CASE("future: valid() is true until get(), false after, and wait() keeps it valid",
          "[future]") {
  watchdog guard{"future: valid"};
  parallel::thread_pool pool{1};
  auto fut = pool.submit(add, 2, 3);
  REQUIRE(fut.valid());
  fut.wait();
  REQUIRE(fut.valid());
  REQUIRE(fut.wait_for(0s) == std::future_status::ready);
  REQUIRE(fut.get() == 5);
  REQUIRE_FALSE(fut.valid());

  auto source = pool.submit(add, 4, 4);
  auto moved = std::move(source);
  REQUIRE(moved.valid());
  REQUIRE_FALSE(source.valid());  // NOLINT(bugprone-use-after-move): moved-from is invalid
  REQUIRE(moved.get() == 8);
}

TEST_CASE("future: future<void>", "[future]") {
  watchdog guard{"future: future<void>"};
  parallel::thread_pool pool{2};
  std::atomic<int> touched{0};
  parallel::future<void> fut = pool.submit([&touched] { touched = 1; });
  REQUIRE(fut.valid());
  fut.get();
  REQUIRE(touched == 1);
  REQUIRE_FALSE(fut.valid());

  auto failing = pool.submit([] { throw task_failed{"void task"}; });
  REQUIRE_THROWS_AS(failing.get(), task_failed);
}

TEST_CASE("future: move-only arguments and results", "[future]") {
  watchdog guard{"future: move-only arguments and results"};
  parallel::thread_pool pool{2};
  auto fut = pool.submit(
      [](std::unique_ptr<int> p, int extra) { return std::make_unique<int>(*p + extra); },
      std::make_unique<int>(40), 2);
  std::unique_ptr<int> result = fut.get();
  REQUIRE(result != nullptr);
  REQUIRE(*result == 42);

  // A move-only callable.
  auto owned = std::make_unique<std::string>("kept");
  auto by_callable = pool.submit([s = std::move(owned)] { return *s + "!"; });
  REQUIRE(by_callable.get() == "kept!");
}

TEST_CASE("future: arguments are copied at submit, not referenced", "[future]") {
  watchdog guard{"future: arguments are copied at submit"};
  parallel::thread_pool pool{1};
  std::promise<void> gate;
  std::shared_future<void> opened = gate.get_future().share();
  auto blocker = pool.submit([opened] { (void)opened.wait_for(10s); });  // keeps the worker busy
  std::string text = "original";
  auto fut = pool.submit([](const std::string& s) { return s; }, text);
  text = "changed after submit";
  gate.set_value();
  blocker.get();
  REQUIRE(fut.get() == "original");
}

TEST_CASE("future: ten thousand submits", "[future]") {
  watchdog guard{"future: ten thousand submits"};
  parallel::thread_pool pool{2};
  std::vector<parallel::future<long>> futures;
  futures.reserve(10000);
  for (int i = 0; i < 10000; ++i)
    futures.push_back(pool.submit([i] { return static_cast<long>(i) * i; }));
  long sum = 0;
  long expected = 0;
  for (int i = 0; i < 10000; ++i) {
    sum += futures[static_cast<std::size_t>(i)].get();
    expected += static_cast<long>(i) * i;
  }
  REQUIRE(sum == expected);
}

TEST_CASE("future: tasks submit tasks and wait for them (recursive fib)", "[future]") {
  watchdog guard{"future: recursive fib via submit"};
  for (int workers : {1, 2}) {
    CAPTURE(workers);
    parallel::thread_pool pool{workers};
    REQUIRE(submitted_fib{&pool}(20) == 6765);
    // From outside, through a future of the whole computation.
    REQUIRE(pool.submit(submitted_fib{&pool}, 15).get() == 610);
  }
}

TEST_CASE("future: the pool's destructor runs pending tasks", "[future][thread_pool]") {
  watchdog guard{"future: the pool's destructor runs pending tasks"};
  std::atomic<int> counter{0};
  {
    parallel::thread_pool pool{1};
    (void)pool.submit([] { std::this_thread::sleep_for(50ms); });  // so the others are still queued
    for (int i = 0; i < 100; ++i) (void)pool.submit([&counter] { counter.fetch_add(1); });
  }
  REQUIRE(counter == 100);
}

TEST_CASE("future: submit really runs tasks at the same time on a 2-worker pool",
          "[future][thread_pool]") {
  watchdog guard{"future: submit runs tasks at the same time"};
  parallel::thread_pool pool{2};
  std::atomic<int> arrived{0};
  // Each task waits (up to 10 s) for the other to arrive: only two threads can satisfy both.
  const auto meet = [&arrived] {
    arrived.fetch_add(1);
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(100us);
    return arrived.load() >= 2;
  };
  auto a = pool.submit(meet);
  auto b = pool.submit(meet);
  REQUIRE(a.get());
  REQUIRE(b.get());
}
