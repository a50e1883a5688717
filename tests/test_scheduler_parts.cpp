// The scheduler's lock-free parts on their own (detail/scheduler/README.md): the Chase-Lev deque
// each worker owns (work_deque.hpp) and the queue other threads submit into
// (injection_queue.hpp). Their order, their tags, a deque's growth, and, with threads racing (the
// TSan build runs these too), that every task is taken exactly once.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <parallel/detail/scheduler/injection_queue.hpp>
#include <parallel/detail/scheduler/work_deque.hpp>
#include <thread>
#include <vector>

#include "catch.hpp"

namespace {

using parallel::detail::any_tag;
using parallel::detail::injection_queue;
using parallel::detail::isolation_tag;
using parallel::detail::task;
using parallel::detail::work_deque;

/// A task that knows its number and counts how often it was taken.
struct numbered : task {
  explicit numbered(int n, isolation_tag tag = any_tag) : task(&run, tag), number(n) {}
  static void run(task*) noexcept {}
  int number;
  std::atomic<int> taken{0};
};

std::vector<std::unique_ptr<numbered>> make_tasks(int n, isolation_tag tag = any_tag) {
  std::vector<std::unique_ptr<numbered>> out;
  for (int i = 0; i < n; ++i) out.push_back(std::make_unique<numbered>(i, tag));
  return out;
}

int number_of(task* t) { return t == nullptr ? -1 : static_cast<numbered*>(t)->number; }

}  // namespace

TEST_CASE("work_deque: the owner pops newest first, thieves steal oldest first",
          "[scheduler][work_deque]") {
  work_deque deque(4);
  auto tasks = make_tasks(6);
  CHECK(deque.empty());
  CHECK(deque.pop() == nullptr);
  CHECK(deque.steal() == nullptr);
  CHECK(deque.push(tasks[0].get()));  // it was empty: thieves are worth waking
  for (int i = 1; i < 6; ++i) CHECK_FALSE(deque.push(tasks[static_cast<std::size_t>(i)].get()));
  CHECK(number_of(deque.steal()) == 0);
  CHECK(number_of(deque.steal()) == 1);
  CHECK(number_of(deque.pop()) == 5);
  CHECK(number_of(deque.pop()) == 4);
  CHECK(number_of(deque.steal()) == 2);
  CHECK(number_of(deque.pop()) == 3);
  CHECK(deque.pop() == nullptr);
  CHECK(deque.steal() == nullptr);
  CHECK(deque.empty());
}

TEST_CASE("work_deque: grows past its capacity and keeps every task in order",
          "[scheduler][work_deque]") {
  work_deque deque(2);
  auto tasks = make_tasks(1000);
  for (auto& t : tasks) deque.push(t.get());
  for (int i = 0; i < 300; ++i) REQUIRE(number_of(deque.steal()) == i);
  for (int i = 999; i >= 300; --i) REQUIRE(number_of(deque.pop()) == i);
  CHECK(deque.empty());
}

TEST_CASE("work_deque: pop and steal take only a task of the tag asked for",
          "[scheduler][work_deque]") {
  work_deque deque;
  numbered a(1, 7), b(2, 8);
  deque.push(&a);
  deque.push(&b);
  CHECK(deque.pop(7) == nullptr);    // the newest is tagged 8
  CHECK(deque.steal(8) == nullptr);  // the oldest is tagged 7
  CHECK(number_of(deque.steal(7)) == 1);
  CHECK(number_of(deque.pop(8)) == 2);
  CHECK(deque.empty());
}

TEST_CASE("work_deque: with thieves racing the owner, every task is taken exactly once",
          "[scheduler][work_deque][stress]") {
  constexpr int count = 200000;
  constexpr int thieves = 2;
  work_deque deque(8);
  auto tasks = make_tasks(count);
  std::atomic<bool> done{false};
  std::atomic<int> stolen{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < thieves; ++k) {
    threads.emplace_back([&] {
      while (!done.load(std::memory_order_acquire)) {
        if (task* t = deque.steal()) {
          static_cast<numbered*>(t)->taken.fetch_add(1, std::memory_order_relaxed);
          stolen.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  int popped = 0;
  // The owner pushes in bursts and pops some back (the deque grows), then one task at a time
  // and pops it at once (the owner and the thieves race for the last task every time).
  for (int i = 0; i < count;) {
    const int burst = i < count / 4 ? 1 + i % 17 : 1;
    for (int j = 0; j < burst && i < count; ++j, ++i)
      deque.push(tasks[static_cast<std::size_t>(i)].get());
    for (int j = 0; j < (burst + 1) / 2; ++j) {
      if (task* t = deque.pop()) {
        static_cast<numbered*>(t)->taken.fetch_add(1, std::memory_order_relaxed);
        ++popped;
      }
    }
  }
  while (task* t = deque.pop()) {
    static_cast<numbered*>(t)->taken.fetch_add(1, std::memory_order_relaxed);
    ++popped;
  }
  done.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  INFO("popped " << popped << ", stolen " << stolen.load());
  CHECK(popped + stolen.load() == count);
  for (auto& t : tasks) REQUIRE(t->taken.load() == 1);
}

TEST_CASE("injection_queue: takes the oldest task, or the oldest of a tag",
          "[scheduler][injection_queue]") {
  injection_queue queue;
  const auto none = [](task*) { FAIL("batch 0 moves nothing"); };
  CHECK_FALSE(queue.maybe_nonempty());
  CHECK(queue.take(any_tag, 0, none) == nullptr);
  numbered a(1, 5), b(2, 6), c(3, 5);
  queue.push(&a);
  queue.push(&b);
  queue.push(&c);
  CHECK(queue.maybe_nonempty());
  CHECK(queue.take(9, 0, none) == nullptr);  // no task of that tag
  CHECK(number_of(queue.take(6, 0, none)) == 2);
  CHECK(number_of(queue.take(any_tag, 0, none)) == 1);
  CHECK(number_of(queue.take(5, 0, none)) == 3);
  CHECK(queue.take(any_tag, 0, none) == nullptr);
  CHECK_FALSE(queue.maybe_nonempty());
}

TEST_CASE("injection_queue: a batch moves up to half of the rest into the sink, newest first",
          "[scheduler][injection_queue]") {
  injection_queue queue;
  auto tasks = make_tasks(9);
  for (auto& t : tasks) queue.push(t.get());
  std::vector<int> moved;
  const auto sink = [&](task* t) { moved.push_back(number_of(t)); };
  CHECK(number_of(queue.take(any_tag, 100, sink)) == 0);
  // 8 left: at most half of them move, the newest of those first (the worker pops its deque
  // from the newest end, so it runs them in the order they came).
  CHECK(moved == std::vector<int>{4, 3, 2, 1});
  moved.clear();
  CHECK(number_of(queue.take(any_tag, 1, sink)) == 5);
  CHECK(moved == std::vector<int>{6});
  CHECK(number_of(queue.take(any_tag, 0, sink)) == 7);
  CHECK(number_of(queue.take(any_tag, 0, sink)) == 8);
  CHECK_FALSE(queue.maybe_nonempty());
}

TEST_CASE(
    "injection_queue: producers never lose a task, and one consumer sees each producer's "
    "tasks in order",
    "[scheduler][injection_queue][stress]") {
  constexpr int producers = 3;
  constexpr int per_producer = 10000;
  injection_queue queue;
  std::vector<std::unique_ptr<numbered>> tasks;
  for (int p = 0; p < producers; ++p)
    for (int i = 0; i < per_producer; ++i)
      tasks.push_back(std::make_unique<numbered>(p * per_producer + i));
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i)
        queue.push(tasks[static_cast<std::size_t>(p * per_producer + i)].get());
    });
  }
  std::vector<int> last(producers, -1);
  int taken = 0;
  bool in_order = true;
  const auto none = [](task*) {};
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (taken < producers * per_producer && std::chrono::steady_clock::now() < until) {
    task* t = queue.take(any_tag, 0, none);
    if (t == nullptr) {
      std::this_thread::yield();
      continue;
    }
    auto* n = static_cast<numbered*>(t);
    n->taken.fetch_add(1, std::memory_order_relaxed);
    const int producer = n->number / per_producer;
    in_order = in_order && n->number > last[static_cast<std::size_t>(producer)];
    last[static_cast<std::size_t>(producer)] = n->number;
    ++taken;
  }
  for (auto& t : threads) t.join();
  REQUIRE(taken == producers * per_producer);  // else a task was lost (a minute passed)
  CHECK(in_order);
  CHECK_FALSE(queue.maybe_nonempty());
  for (auto& t : tasks) REQUIRE(t->taken.load() == 1);
}

TEST_CASE("injection_queue: consumers racing producers take every task exactly once",
          "[scheduler][injection_queue][stress]") {
  constexpr int producers = 2;
  constexpr int consumers = 2;
  constexpr int per_producer = 10000;
  constexpr int total = producers * per_producer;
  injection_queue queue;
  auto tasks = make_tasks(total);
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = p; i < total; i += producers)
        queue.push(tasks[static_cast<std::size_t>(i)].get());
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      // A consumer moves a batch into its own list, as a worker does into its deque.
      std::vector<task*> mine;
      const auto sink = [&](task* t) { mine.push_back(t); };
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (taken.load(std::memory_order_relaxed) < total &&
             std::chrono::steady_clock::now() < until) {
        task* t = queue.take(any_tag, 4, sink);
        if (t != nullptr) mine.push_back(t);
        if (mine.empty()) std::this_thread::yield();
        for (task* got : mine) {
          static_cast<numbered*>(got)->taken.fetch_add(1, std::memory_order_relaxed);
          taken.fetch_add(1, std::memory_order_relaxed);
        }
        mine.clear();
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(taken.load() == total);  // else a task was lost (a minute passed)
  for (auto& t : tasks) REQUIRE(t->taken.load() == 1);
}
