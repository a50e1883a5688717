// How a future's completion reaches whoever asked to hear of it: a continuation (fut.then) or a
// waiter on many futures (as_completed, wait_any, wait_all). No thread per future and no polling.
//
// Each future's state has a hook_list: one word holding a lock bit, a "fired" bit and the head of
// a list of hooks. The side that completes the state writes the result, then fire_all(): it marks
// the list fired, takes the hooks and calls each one, and only then sets the state's latch (after
// which the state may be freed, scheduler/parker.hpp). So a hook is always called while the state
// is alive, and "fired" is the first sign that a result is there: a hook's owner may see it a few
// instructions before the latch is set.
//
// A hook's memory belongs to whoever added it. A completion_watch (many futures, one waiter) takes
// its hooks back when it is done: remove() them from the states that have not fired, and for those
// that fired but whose call has not reached the watch yet, wait for that call (it is already on
// its way: fire_all calls the hooks right after taking them). fire() records itself under the
// watch's mutex, which the watch holds while it removes its hooks: a state whose hook the watch has
// not seen fire cannot be freed meanwhile, since its completer has not passed the call to fire().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "../platform.hpp"
#include "../scheduler/parker.hpp"
#include "../scheduler/scheduler.hpp"

namespace parallel::detail {

/// Called once when the state it was added to completes (or is cancelled). Must not throw.
struct completion_hook {
  using fire_fn = void (*)(completion_hook*) noexcept;
  explicit completion_hook(fire_fn f) noexcept : fire(f) {}
  fire_fn fire;
  completion_hook* next = nullptr;  // the list's, while added
};

class hook_list {
 public:
  /// True once the state completed: its hooks have been taken (and are being or were called).
  bool fired() const noexcept { return (word_.load(std::memory_order_acquire) & fired_bit) != 0; }

  /// Adds h; false when the state completed already (h is not added and will not be called).
  bool add(completion_hook* h) noexcept {
    if (fired()) return false;
    const std::uintptr_t w = lock();
    if ((w & fired_bit) != 0) {
      unlock(w);
      return false;
    }
    h->next = reinterpret_cast<completion_hook*>(w);
    unlock(reinterpret_cast<std::uintptr_t>(h));
    return true;
  }

  /// Takes h back; false when the state completed first: h is then called (or was).
  bool remove(completion_hook* h) noexcept {
    const std::uintptr_t w = lock();
    if ((w & fired_bit) != 0) {
      unlock(w);
      return false;
    }
    auto* head = reinterpret_cast<completion_hook*>(w);
    if (head == h) {
      head = h->next;
    } else {
      for (completion_hook* p = head; p != nullptr; p = p->next) {
        if (p->next == h) {
          p->next = h->next;
          break;
        }
      }
    }
    unlock(reinterpret_cast<std::uintptr_t>(head));
    return true;
  }

  /// The completer's step between writing the result and setting the latch. Idempotent.
  void fire_all() noexcept {
    const std::uintptr_t w = lock();
    if ((w & fired_bit) != 0) {
      unlock(w);
      return;
    }
    // The release store publishes the result written before: a reader that sees fired sees it.
    unlock(fired_bit);
    auto* h = reinterpret_cast<completion_hook*>(w);
    while (h != nullptr) {
      completion_hook* next = h->next;  // h may be gone once called
      h->fire(h);
      h = next;
    }
  }

 private:
  static constexpr std::uintptr_t lock_bit = 1;
  static constexpr std::uintptr_t fired_bit = 2;  // hooks are pointer-aligned: bits 0-1 are free

  // Held for a few instructions only; a holder preempted mid-way costs a yield or two.
  std::uintptr_t lock() noexcept {
    std::uintptr_t w = word_.load(std::memory_order_relaxed);
    for (int spins = 0;; ++spins) {
      if ((w & lock_bit) == 0 &&
          word_.compare_exchange_weak(w, w | lock_bit, std::memory_order_acquire,
                                      std::memory_order_relaxed))
        return w;
      if (spins < 64)
        cpu_relax();
      else
        std::this_thread::yield();
      w = word_.load(std::memory_order_relaxed);
    }
  }
  void unlock(std::uintptr_t w) noexcept { word_.store(w, std::memory_order_release); }

  std::atomic<std::uintptr_t> word_{0};
};

/// One waiter on many futures' states, told of each completion in the order they happen.
/// Owned and used by one thread; fire() comes from the completers' threads.
class completion_watch {
 public:
  /// `helper`: when the waiting thread is a worker of that scheduler, it runs the tasks of its
  /// own call while it waits (so waiting inside a pool task cannot starve the pool), as
  /// future::wait does; null otherwise.
  completion_watch(std::size_t n, scheduler* helper, isolation_tag tag)
      : links_(n), helper_(helper), tag_(tag) {
    for (auto& l : links_) l.owner = this;
  }
  completion_watch(const completion_watch&) = delete;
  completion_watch& operator=(const completion_watch&) = delete;
  ~completion_watch() { unwatch(); }

  /// Starts watching `hooks` as number `index`; a state already complete counts at once.
  void watch(std::size_t index, hook_list& hooks) {
    link& l = links_[index];
    l.index = index;
    l.list = &hooks;
    // Marked before the hook is published: its fire() may come at once, on another thread, and
    // clears the mark (the list's lock orders this write before that one).
    l.added = true;
    if (hooks.add(&l)) return;
    std::lock_guard lock(mutex_);
    l.added = false;
    ready_.push_back(index);
  }

  /// The next completion's index, in the order they happened; nullopt once `deadline` passed.
  std::optional<std::size_t> next(const std::chrono::steady_clock::time_point* deadline) {
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        if (!ready_.empty()) return pop(lock);
        if (helper_ == nullptr) {
          if (deadline == nullptr) {
            changed_.wait(lock, [this] { return !ready_.empty(); });
          } else if (!changed_.wait_until(lock, *deadline, [this] { return !ready_.empty(); })) {
            return std::nullopt;
          }
          return pop(lock);
        }
        signal_.reset();  // a fire() after this sets it again
      }
      const bool woken = deadline == nullptr ? (helper_->wait(signal_, tag_), true)
                                             : helper_->wait_until(signal_, tag_, *deadline);
      if (!woken) {
        std::unique_lock lock(mutex_);
        if (!ready_.empty()) return pop(lock);
        return std::nullopt;
      }
    }
  }

 private:
  struct link : completion_hook {
    link() noexcept : completion_hook(&on_fire) {}
    completion_watch* owner = nullptr;
    hook_list* list = nullptr;
    std::size_t index = 0;
    bool added = false;  // in list, and its call not yet recorded (the watch's mutex)
  };

  static void on_fire(completion_hook* h) noexcept {
    auto* l = static_cast<link*>(h);
    completion_watch* w = l->owner;
    // Everything under the mutex, the notifications too: the watch may end as soon as it can
    // take the mutex after this.
    std::lock_guard lock(w->mutex_);
    l->added = false;
    w->ready_.push_back(l->index);
    w->changed_.notify_all();
    (void)w->signal_.set();
  }

  std::size_t pop(std::unique_lock<std::mutex>&) {
    const std::size_t i = ready_.front();
    ready_.pop_front();
    return i;
  }

  // Takes every hook back (see the top of this file).
  void unwatch() noexcept {
    std::unique_lock lock(mutex_);
    bool in_flight = false;
    for (auto& l : links_) {
      if (l.added && l.list->remove(&l)) l.added = false;
      in_flight = in_flight || l.added;
    }
    if (!in_flight) return;
    // Hooks taken by a completer that has yet to call them: they are on their way.
    changed_.wait(lock, [this] {
      for (const auto& l : links_)
        if (l.added) return false;
      return true;
    });
  }

  std::vector<link> links_;  // sized once: the hooks' addresses stay
  scheduler* helper_;
  isolation_tag tag_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::size_t> ready_;
  latch signal_;  // for a helping worker: set at each fire()
};

}  // namespace parallel::detail
