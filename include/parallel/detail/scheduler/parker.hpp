// Parking a thread and waking it: the per-thread parker and the one-word latch that points at
// the parker of the thread waiting on it. See README.md in this folder for the protocol.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

// std::atomic::wait is a futex on Linux. libstdc++ before GCC 13, on a system without a
// futex-like call (mingw-w64, that is Windows), builds it from condition variables shared by
// address buckets: the waiter compares the value outside their mutex and the notifier does not
// take it, so a notify that falls between the compare and the sleep is lost and the waiter
// sleeps for good (GCC bug 106183). Seen here under Wine as a future's get() that never returned,
// in 3 of 40 runs of one test. There a wait_word has a mutex and a condition variable of its own.
// (Defined beforehand, it chooses: the tests show the bug with 0.)
#ifndef PARALLEL_DETAIL_OWN_WORD_WAIT
#if defined(__GLIBCXX__) && !defined(_GLIBCXX_HAVE_PLATFORM_WAIT)
#define PARALLEL_DETAIL_OWN_WORD_WAIT 1
#else
#define PARALLEL_DETAIL_OWN_WORD_WAIT 0
#endif
#endif

namespace parallel::detail {

/// A 32-bit atomic word a thread can sleep on until it changes: std::atomic::wait where the
/// standard library does it soundly, else a mutex and a condition variable (see above).
class wait_word {
 public:
  explicit wait_word(std::uint32_t value = 0) noexcept : value_(value) {}

  std::uint32_t load(std::memory_order order) const noexcept { return value_.load(order); }
  void store(std::uint32_t value, std::memory_order order) noexcept { value_.store(value, order); }
  std::uint32_t fetch_add(std::uint32_t delta, std::memory_order order) noexcept {
    return value_.fetch_add(delta, order);
  }

  /// Returns once the word no longer equals `old` (at once when it already differs).
  void wait(std::uint32_t old, std::memory_order order) const noexcept {
#if PARALLEL_DETAIL_OWN_WORD_WAIT
    std::unique_lock lock(mutex_);
    while (value_.load(order) == old) changed_.wait(lock);
#else
    value_.wait(old, order);
#endif
  }
  /// Wakes one / every thread in wait(); call after changing the word.
  void notify_one() noexcept {
#if PARALLEL_DETAIL_OWN_WORD_WAIT
    { std::lock_guard lock(mutex_); }  // a waiter is either before its compare or asleep
    changed_.notify_one();
#else
    value_.notify_one();
#endif
  }
  void notify_all() noexcept {
#if PARALLEL_DETAIL_OWN_WORD_WAIT
    { std::lock_guard lock(mutex_); }
    changed_.notify_all();
#else
    value_.notify_all();
#endif
  }

 private:
  std::atomic<std::uint32_t> value_;
#if PARALLEL_DETAIL_OWN_WORD_WAIT
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
#endif
};

/// One per thread that may wait (each worker, and each outside thread through this_parker()).
/// park() sleeps until someone calls unpark() after the epoch was read.
class parker {
 public:
  std::uint32_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }
  /// Sleeps while the epoch still equals `seen` (C++20 atomic wait: a futex on Linux).
  void park(std::uint32_t seen) const noexcept { epoch_.wait(seen, std::memory_order_acquire); }
  void unpark() noexcept {
    epoch_.fetch_add(1, std::memory_order_release);
    epoch_.notify_one();
  }

  /// For workers: why the worker sleeps, so the scheduler can pick one to wake for a new task.
  /// Claimed (back to awake) by exactly one of the waker and the worker itself.
  enum : std::uint32_t { awake = 0, idle = 1, waiting = 2 };
  std::atomic<std::uint32_t> asleep{awake};
  /// While asleep == waiting: the tag of the call it waits for (it can run only those tasks).
  std::atomic<std::uint64_t> waiting_for{0};

 private:
  wait_word epoch_{0};
};

/// The parker of the calling thread when it is not a worker of the pool it waits on.
inline parker& this_parker() noexcept {
  thread_local parker p;
  return p;
}

/// A word one waiter can sleep on: 0 = not signalled, 1 = signalled, 2 = abandoned by its
/// waiter, otherwise the address of the parker of the thread sleeping on it. set() is the
/// signaller's last access to the latch, so the waiter may destroy it as soon as it sees it set.
class latch {
 public:
  bool is_set() const noexcept { return word_.load(std::memory_order_acquire) == set_value; }

  /// Signals. Returns true when the waiter abandoned the latch (detach()): the signaller then
  /// owns whatever holds the latch and must free it.
  bool set() noexcept {
    const std::uintptr_t previous = word_.exchange(set_value, std::memory_order_acq_rel);
    if (previous > detached_value) reinterpret_cast<parker*>(previous)->unpark();
    return previous == detached_value;
  }

  /// The waiter gives up on a latch not yet set, leaving its freeing to the signaller (see
  /// set()). False when the latch is already set: the waiter frees it.
  bool detach() noexcept {
    std::uintptr_t expected = 0;
    return word_.compare_exchange_strong(expected, detached_value, std::memory_order_acq_rel,
                                         std::memory_order_acquire);
  }

  /// For a latch reused as an event (imap_unordered): the waiter clears it before looking for
  /// new results; a set() that follows is not lost.
  void reset() noexcept { word_.store(0, std::memory_order_release); }

  /// Registers `p` to be unparked by set(). False when already set.
  bool arm(parker& p) noexcept {
    std::uintptr_t expected = 0;
    return word_.compare_exchange_strong(expected, reinterpret_cast<std::uintptr_t>(&p),
                                         std::memory_order_acq_rel, std::memory_order_acquire);
  }

  /// Withdraws the registration of `p` (no-op when the latch was set meanwhile).
  void disarm(parker& p) noexcept {
    auto expected = reinterpret_cast<std::uintptr_t>(&p);
    word_.compare_exchange_strong(expected, 0, std::memory_order_acq_rel,
                                  std::memory_order_acquire);
  }

 private:
  static constexpr std::uintptr_t set_value = 1;
  static constexpr std::uintptr_t detached_value = 2;  // parkers are aligned: never 2
  std::atomic<std::uintptr_t> word_{0};
};

}  // namespace parallel::detail
