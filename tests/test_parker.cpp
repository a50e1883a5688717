// How threads sleep and wake (detail/scheduler/parker.hpp): a wait_word's sleeper is woken by
// every change made before or during its sleep, and a latch's waiter by set(), however the two
// threads race. Every wait of the thread pools, of futures and of a call's caller rests on these;
// a wake-up lost here is a call that never returns (as std::atomic::wait of libstdc++ 12 did on
// Windows, GCC bug 106183). Each test runs many round trips between two threads under a watchdog.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <parallel/detail/scheduler/parker.hpp>
#include <thread>

#include "catch.hpp"
#include "test_support.hpp"

namespace {

using parallel::detail::latch;
using parallel::detail::parker;
using parallel::detail::wait_word;
using test_support::watchdog;

constexpr std::uint32_t round_trips = 10'000;

}  // namespace

TEST_CASE("wait_word: a sleeper wakes for every change, however the threads race", "[parker]") {
  watchdog guard("wait_word ping-pong", std::chrono::seconds(60));
  // The word counts the turns: the main thread makes it odd, the other one even again.
  wait_word turn{0};
  std::thread other([&turn] {
    for (std::uint32_t i = 0; i < round_trips; ++i) {
      turn.wait(2 * i, std::memory_order_acquire);  // until the main thread made it 2i+1
      turn.store(2 * i + 2, std::memory_order_release);
      turn.notify_one();
    }
  });
  for (std::uint32_t i = 0; i < round_trips; ++i) {
    turn.store(2 * i + 1, std::memory_order_release);
    turn.notify_one();
    turn.wait(2 * i + 1, std::memory_order_acquire);  // until the other thread made it 2i+2
  }
  other.join();
  REQUIRE(turn.load(std::memory_order_acquire) == 2 * round_trips);
}

TEST_CASE("wait_word: wait returns at once when the word already changed", "[parker]") {
  wait_word word{5};
  word.wait(4, std::memory_order_acquire);
  word.fetch_add(1, std::memory_order_release);
  word.wait(5, std::memory_order_acquire);
  REQUIRE(word.load(std::memory_order_acquire) == 6);
}

TEST_CASE("latch: set() wakes the thread parked on it, however the two race", "[parker]") {
  watchdog guard("latch hand-off", std::chrono::seconds(60));
  // Each round: the main thread waits on a fresh latch the other thread sets, as a future's
  // get() waits on its task (scheduler::block_until's parking, without the spinning).
  std::atomic<latch*> current{nullptr};
  wait_word handed{0};
  std::thread setter([&] {
    for (std::uint32_t i = 0; i < round_trips; ++i) {
      handed.wait(i, std::memory_order_acquire);  // the latch of round i is published
      current.load(std::memory_order_acquire)->set();
    }
  });
  parker& me = parallel::detail::this_parker();
  std::uint32_t woken_late = 0;
  for (std::uint32_t i = 0; i < round_trips; ++i) {
    auto l = std::make_unique<latch>();
    current.store(l.get(), std::memory_order_release);
    handed.store(i + 1, std::memory_order_release);
    handed.notify_one();
    for (;;) {
      const std::uint32_t seen = me.epoch();
      if (!l->arm(me)) break;  // set already
      me.park(seen);
      if (l->is_set()) break;
      l->disarm(me);  // an earlier round's late unpark: arm again
      ++woken_late;
    }
    REQUIRE(l->is_set());
  }
  setter.join();
  INFO("early wake-ups from earlier rounds: " << woken_late);
  SUCCEED();
}
