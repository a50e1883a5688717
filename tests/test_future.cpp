// thread_pool::submit and parallel::future (future.hpp): Python's apply_async. get returns the
// value or rethrows f's exception with its own type; wait_for and valid behave as std::future's;
// tasks may submit and wait for tasks; a pool runs every submitted task before it is destroyed;
// cancel takes back a queued task (not a running one); then chains a function on the result.
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

TEST_CASE(
    "future: a worker's get() of a task it submitted and nobody took runs it there, with the "
    "same value, exception, cancel and order as anywhere else",
    "[future]") {
  watchdog guard{"future: get of a worker's own task"};
  parallel::thread_pool pool{1};  // no thief: every task below is still queued at its get()
  const auto inside = [&pool] {
    std::vector<std::string> seen;
    // Newest on this worker's deque: runs in get(), on this thread.
    auto value = pool.submit([] { return std::this_thread::get_id(); });
    seen.push_back(value.get() == std::this_thread::get_id() ? "here" : "elsewhere");
    // Its exception, with its own type.
    auto failing = pool.submit([]() -> int { throw task_failed{"own"}; });
    try {
      (void)failing.get();
      seen.push_back("no exception");
    } catch (const task_failed& e) {
      seen.push_back(e.reason);
    }
    REQUIRE_FALSE(failing.valid());
    // Cancelled first: get() throws cancelled_error and the task never runs.
    bool ran = false;
    auto cancelled = pool.submit([&ran] { ran = true; });
    REQUIRE(cancelled.cancel());
    try {
      cancelled.get();
    } catch (const parallel::cancelled_error&) {
      seen.push_back("cancelled");
    }
    // Not the newest: waited for as usual (this worker runs the newer one meanwhile); then the
    // newer one is done already when its get() comes.
    auto older = pool.submit([] { return 1; });
    auto newer = pool.submit([] { return 2; });
    seen.push_back(std::to_string(older.get()) + std::to_string(newer.get()));
    // A task run so may submit and map on the pool itself (it runs under its own call's tag).
    auto nested = pool.submit([&pool] {
      const auto squares = pool.map([](int x) { return x * x; }, std::vector<int>{1, 2, 3});
      return pool.submit([squares] { return squares[0] + squares[1] + squares[2]; }).get();
    });
    seen.push_back(std::to_string(nested.get()));
    // Watched by as_completed on this thread: the watch sees it done, and skips it (emptied).
    std::vector<parallel::future<int>> futs;
    futs.push_back(pool.submit([] { return 5; }));
    futs.push_back(pool.submit([] { return 6; }));
    int sum = 0;
    int yielded = 0;
    for (auto& f : parallel::as_completed(futs)) {
      ++yielded;
      sum += f.get();
      for (auto& other : futs)
        if (other.valid()) sum += other.get();  // the one left: the newest, run here
    }
    seen.push_back(std::to_string(sum) + "/" + std::to_string(yielded));
    return std::pair{seen, ran};
  };
  const auto [seen, ran] = pool.submit(inside).get();
  CHECK(seen == std::vector<std::string>{"here", "own", "cancelled", "12", "14", "11/1"});
  CHECK_FALSE(ran);
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

// --- cancel --------------------------------------------------------------------------------------

namespace {

/// A task that holds its worker until the test opens the gate (bounded: a failing test cannot
/// hang the pool's destructor), after saying it started.
struct gated_task {
  std::shared_future<void> gate;
  std::shared_ptr<std::promise<void>> started;
  int operator()() const {
    started->set_value();
    return gate.wait_for(10s) == std::future_status::ready ? 1 : 0;
  }
};

struct gate_pair {
  std::promise<void> gate;
  std::shared_future<void> opened = gate.get_future().share();
  std::shared_ptr<std::promise<void>> started = std::make_shared<std::promise<void>>();
  std::future<void> running = started->get_future();
  gated_task task() const { return {opened, started}; }
};

}  // namespace

TEST_CASE("future: cancel takes back a queued task, not a running one", "[future][cancel]") {
  watchdog guard{"future: cancel queued vs running"};
  std::atomic<int> ran{0};
  {
    parallel::thread_pool pool{1};
    gate_pair blocker;
    auto running = pool.submit(blocker.task());
    REQUIRE(blocker.running.wait_for(10s) == std::future_status::ready);  // the worker is held
    auto queued = pool.submit([&ran] { return ran.fetch_add(1) + 100; });
    auto kept = pool.submit([&ran] { return ran.fetch_add(1) + 200; });

    REQUIRE_FALSE(running.cancel());  // started: it goes on
    // A thread cannot be killed: asking for it changes nothing.
    REQUIRE_FALSE(running.cancel(parallel::if_running::kill));
    REQUIRE(queued.cancel());
    REQUIRE(queued.cancel());  // again: still cancelled
    REQUIRE(queued.is_ready());
    REQUIRE(queued.wait_for(0s) == std::future_status::ready);
    REQUIRE(queued.valid());

    blocker.gate.set_value();
    REQUIRE(running.get() == 1);
    REQUIRE(kept.get() == 200);  // the first to run after the blocker: the cancelled one did not
    std::string message;
    try {
      (void)queued.get();
    } catch (const parallel::cancelled_error& e) {
      message = e.what();
    }
    REQUIRE(message.find("cancelled") != std::string::npos);
    REQUIRE_FALSE(queued.valid());
  }  // the pool ran every task still queued (the cancelled one is only dropped)
  REQUIRE(ran == 1);
}

TEST_CASE("future: cancel of a finished task returns false and keeps its result",
          "[future][cancel]") {
  watchdog guard{"future: cancel after the end"};
  parallel::thread_pool pool{2};
  auto done = pool.submit(add, 2, 2);
  done.wait();
  REQUIRE_FALSE(done.cancel());
  REQUIRE(done.get() == 4);
  REQUIRE_THROWS_AS(done.cancel(), std::future_error);  // empty after get()
}

TEST_CASE("future: a cancelled future may be dropped before its queue entry is reached",
          "[future][cancel]") {
  watchdog guard{"future: drop a cancelled future"};
  std::atomic<int> ran{0};
  {
    parallel::thread_pool pool{1};
    gate_pair blocker;
    auto running = pool.submit(blocker.task());
    REQUIRE(blocker.running.wait_for(10s) == std::future_status::ready);
    for (int i = 0; i < 100; ++i) {
      auto f = pool.submit([&ran, big = std::vector<int>(1000, i)] { ran += big[0] >= 0; });
      REQUIRE(f.cancel());
    }  // each future dropped while its task still sits in the queue
    blocker.gate.set_value();
    REQUIRE(running.get() == 1);
  }
  REQUIRE(ran == 0);
}

// --- then ----------------------------------------------------------------------------------------

TEST_CASE("future: then chains a function on the result", "[future][then]") {
  watchdog guard{"future: then"};
  parallel::thread_pool pool{2};
  auto source = pool.submit(add, 20, 1);
  parallel::future<std::string> text =
      source.then([](int r) { return 2 * r; }).then([](int r) { return std::to_string(r); });
  REQUIRE_FALSE(source.valid());  // then() took the future over
  REQUIRE(text.get() == "42");

  // Move-only results pass along by move; a void source gives g no argument; void g.
  auto owned =
      pool.submit([] { return std::make_unique<int>(7); }).then([](std::unique_ptr<int> p) {
        return *p * 6;
      });
  REQUIRE(owned.get() == 42);
  std::atomic<int> seen{0};
  parallel::future<void> both = pool.submit([&seen] { seen += 1; }).then([&seen] { seen += 10; });
  both.get();
  REQUIRE(seen == 11);
  REQUIRE(pool.submit([] {}).then([] { return 5; }).get() == 5);
}

TEST_CASE("future: then on a result that is already there runs at once", "[future][then]") {
  watchdog guard{"future: then on a ready future"};
  parallel::thread_pool pool{1};
  auto ready = pool.submit(add, 1, 1);
  ready.wait();
  std::thread::id where;
  auto next = ready.then([&where](int r) {
    where = std::this_thread::get_id();
    return r + 1;
  });
  REQUIRE(next.is_ready());  // ran inside then(), on this thread (Python's add_done_callback)
  REQUIRE(where == std::this_thread::get_id());
  REQUIRE(next.get() == 3);
}

TEST_CASE("future: then runs without anyone waiting, as soon as the result is there",
          "[future][then]") {
  watchdog guard{"future: then without a waiter"};
  parallel::thread_pool pool{2};
  gate_pair blocker;
  std::promise<int> reached;
  std::future<int> reached_value = reached.get_future();
  auto chained = pool.submit(blocker.task()).then([&reached](int r) {
    reached.set_value(r);
    return r;
  });
  REQUIRE(blocker.running.wait_for(10s) == std::future_status::ready);
  REQUIRE_FALSE(chained.is_ready());
  blocker.gate.set_value();
  // Nobody waits on `chained`: the continuation is run by the pool itself.
  REQUIRE(reached_value.wait_for(10s) == std::future_status::ready);
  REQUIRE(reached_value.get() == 1);
  REQUIRE(chained.get() == 1);
}

TEST_CASE("future: an exception skips then's function and reaches its future", "[future][then]") {
  watchdog guard{"future: then and exceptions"};
  parallel::thread_pool pool{2};
  std::atomic<int> calls{0};
  auto failed = pool.submit([]() -> int { throw task_failed{"source"}; })
                    .then([&calls](int r) {
                      ++calls;
                      return r;
                    })
                    .then([&calls](int r) {
                      ++calls;
                      return r;
                    });
  std::string reason;
  try {
    (void)failed.get();
  } catch (const task_failed& e) {
    reason = e.reason;
  }
  REQUIRE(reason == "source");
  REQUIRE(calls == 0);

  auto thrown_by_g = pool.submit(add, 1, 2).then([](int) -> int { throw std::out_of_range{"g"}; });
  REQUIRE_THROWS_AS(thrown_by_g.get(), std::out_of_range);
}

TEST_CASE("future: cancel and then", "[future][then][cancel]") {
  watchdog guard{"future: cancel and then"};
  std::atomic<int> calls{0};
  {
    parallel::thread_pool pool{1};
    gate_pair blocker;
    auto running = pool.submit(blocker.task());
    REQUIRE(blocker.running.wait_for(10s) == std::future_status::ready);

    // then() of a cancelled future: g is skipped, the cancellation reaches g's future.
    auto queued = pool.submit(add, 1, 2);
    REQUIRE(queued.cancel());
    auto after = queued.then([&calls](int r) { return r + calls++; });
    REQUIRE_THROWS_AS(after.get(), parallel::cancelled_error);

    // Cancelling then()'s future before its source is done: g never runs; the source does.
    std::atomic<int> source_ran{0};
    auto source = pool.submit([&source_ran] { return ++source_ran; });
    auto next = source.then([&calls](int r) { return r + calls++; });
    REQUIRE(next.cancel());
    REQUIRE_THROWS_AS(next.get(), parallel::cancelled_error);
    blocker.gate.set_value();
    REQUIRE(running.get() == 1);
    // A then() whose g already ran cannot be cancelled.
    auto finished = pool.submit(add, 2, 2).then([](int r) { return r; });
    finished.wait();
    REQUIRE_FALSE(finished.cancel());
    REQUIRE(finished.get() == 4);
  }
  REQUIRE(calls == 0);
}

TEST_CASE("future: a long chain of then() completes", "[future][then]") {
  watchdog guard{"future: a long chain"};
  parallel::thread_pool pool{2};
  parallel::future<long> chain = pool.submit([] { return 0L; });
  for (int i = 0; i < 1000; ++i) chain = chain.then([](long r) { return r + 1; });
  REQUIRE(chain.get() == 1000);
  // Many independent chains at once.
  std::vector<parallel::future<int>> chains;
  for (int i = 0; i < 200; ++i)
    chains.push_back(pool.submit(add, i, 0).then([](int r) { return r * 2; }));
  long sum = 0;
  for (auto& c : chains) sum += c.get();
  REQUIRE(sum == 2 * (199 * 200 / 2));
}
