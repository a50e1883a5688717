// A Chase-Lev work-stealing deque (Chase & Lev 2005). The owner pushes and pops at the bottom;
// thieves take from the top. The races on the last task use seq_cst operations rather than the
// fences of Le et al. (2013): the same instructions on x86, and ThreadSanitizer understands them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "task.hpp"

namespace parallel::detail {

class work_deque {
 public:
  explicit work_deque(std::size_t capacity = 256) {
    auto first = std::make_unique<ring>(capacity);
    ring_.store(first.get(), std::memory_order_relaxed);
    rings_.push_back(std::move(first));
  }
  work_deque(const work_deque&) = delete;
  work_deque& operator=(const work_deque&) = delete;

  /// Owner only. Returns true when the deque looked empty before the push (thieves may be
  /// hungry and worth waking).
  bool push(task* t) {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    const std::int64_t top = top_.load(std::memory_order_acquire);
    ring* r = ring_.load(std::memory_order_relaxed);
    if (b - top > static_cast<std::int64_t>(r->mask)) r = grow(r, top, b);
    // The slot is published with release so a thief that reads it also sees the task's data.
    // bottom is stored seq_cst: the scheduler's look for sleepers that follows must not be
    // ordered before it (README.md, "Sleep and wake").
    r->put(b, t);
    bottom_.store(b + 1, std::memory_order_seq_cst);
    return b - top <= 0;
  }

  /// Owner only. Takes the newest task if its tag matches `tag` (any_tag matches all).
  task* pop(isolation_tag tag = any_tag) {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    ring* r = ring_.load(std::memory_order_relaxed);
    if (b < top_.load(std::memory_order_relaxed)) return nullptr;  // empty (top only grows)
    if (tag != any_tag && r->tag_at(b) != tag) return nullptr;
    return take_newest(r, b);
  }

  /// Owner only. Takes the newest task when it is t (pushed by the owner and not stolen since);
  /// false, and the deque unchanged, otherwise.
  bool pop_if(const task* t) {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    ring* r = ring_.load(std::memory_order_relaxed);
    if (b < top_.load(std::memory_order_relaxed) || r->get(b) != t) return false;
    return take_newest(r, b) == t;
  }

  /// Any thread. Takes the oldest task if its tag matches; nullptr when empty, mismatched or
  /// when another thief won the race.
  task* steal(isolation_tag tag = any_tag) {
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    const std::int64_t b = bottom_.load(std::memory_order_seq_cst);
    if (t >= b) return nullptr;
    ring* r = ring_.load(std::memory_order_acquire);
    // A stale tag or task read here is harmless: the CAS below fails if the slot was reused.
    if (tag != any_tag && r->tag_at(t) != tag) return nullptr;
    task* result = r->get(t);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed))
      return nullptr;
    return result;
  }

  /// Approximate; exact for the owner when no thief is active.
  bool empty() const noexcept {
    return bottom_.load(std::memory_order_relaxed) <= top_.load(std::memory_order_relaxed);
  }

 private:
  struct slot {
    std::atomic<task*> item{nullptr};
    std::atomic<isolation_tag> tag{any_tag};
  };

  struct ring {
    explicit ring(std::size_t capacity) : mask(capacity - 1), slots(new slot[capacity]) {}
    void put(std::int64_t i, task* t) noexcept {
      slot& s = slots[static_cast<std::size_t>(i) & mask];
      s.tag.store(t->tag_, std::memory_order_relaxed);
      s.item.store(t, std::memory_order_release);
    }
    task* get(std::int64_t i) const noexcept {
      return slots[static_cast<std::size_t>(i) & mask].item.load(std::memory_order_acquire);
    }
    isolation_tag tag_at(std::int64_t i) const noexcept {
      return slots[static_cast<std::size_t>(i) & mask].tag.load(std::memory_order_relaxed);
    }
    std::size_t mask;
    std::unique_ptr<slot[]> slots;
  };

  ring* grow(ring* old, std::int64_t top, std::int64_t bottom) {
    auto bigger = std::make_unique<ring>((old->mask + 1) * 2);
    for (std::int64_t i = top; i < bottom; ++i) bigger->put(i, old->get(i));
    ring* r = bigger.get();
    // Thieves may still read the old ring, so it is kept until the deque dies.
    rings_.push_back(std::move(bigger));
    ring_.store(r, std::memory_order_release);
    return r;
  }

  // pop's claim of slot b, the newest (b = bottom - 1 >= top as last seen): the task, or nullptr
  // when a thief took it first.
  task* take_newest(ring* r, std::int64_t b) {
    // seq_cst store then seq_cst load: a thief's claim of the same task cannot pass unseen.
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    task* result = nullptr;
    if (t <= b) {
      result = r->get(b);
      if (t == b) {  // the last task: race the thieves for it
        if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                          std::memory_order_relaxed))
          result = nullptr;
        bottom_.store(b + 1, std::memory_order_relaxed);
      }
    } else {
      bottom_.store(b + 1, std::memory_order_relaxed);
    }
    return result;
  }

  alignas(64) std::atomic<std::int64_t> top_{0};
  alignas(64) std::atomic<std::int64_t> bottom_{0};
  alignas(64) std::atomic<ring*> ring_{nullptr};
  std::vector<std::unique_ptr<ring>> rings_;  // owner only
};

}  // namespace parallel::detail
