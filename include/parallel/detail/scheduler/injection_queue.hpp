// Where threads that are not workers of a pool put their tasks. Producers never take a lock: a
// push is an exchange on the head of an intrusive list (Vyukov's MPSC queue), so a program
// thread that submits in a loop is never stalled behind a worker that was descheduled while it
// held a lock. Workers take tasks under a lock of their own, moving what arrived into a buffer
// they can search by tag (a worker waiting for one call may run only that call's tasks).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <deque>
#include <mutex>

#include "task.hpp"

namespace parallel::detail {

class injection_queue {
 public:
  injection_queue() = default;
  injection_queue(const injection_queue&) = delete;
  injection_queue& operator=(const injection_queue&) = delete;

  /// Any thread. The count is raised with a seq_cst RMW after the task is linked, which is what
  /// the scheduler's wake protocol needs (README.md, "Sleep and wake").
  void push(task* t) noexcept {
    t->next_.store(nullptr, std::memory_order_relaxed);
    task* previous = head_.exchange(t, std::memory_order_acq_rel);
    previous->next_.store(t, std::memory_order_release);
    count_.fetch_add(1, std::memory_order_seq_cst);
  }

  bool maybe_nonempty() const noexcept { return count_.load(std::memory_order_seq_cst) != 0; }

  /// Takes the oldest task tagged `tag` (any_tag: the oldest task) and then, for any_tag, moves
  /// up to `batch` more into `sink` (a worker's own deque, where others can steal them), newest
  /// first: the worker pops its deque from the newest end, so it then runs them in the order
  /// they came, and thieves take the ones that came last. (Oldest first, a batch ran backwards:
  /// one worker ran 40 tasks submitted while it was busy as 20, 19, ..., 1, 21, ..., and an
  /// imap's consumer waited for its next chunk until the batch behind it had run.)
  template <class Sink>
  task* take(isolation_tag tag, std::size_t batch, Sink&& sink) {
    if (!maybe_nonempty()) return nullptr;
    std::lock_guard lock(consumer_mutex_);
    while (task* t = pop_linked()) arrived_.push_back(t);
    auto it = tag == any_tag ? arrived_.begin()
                             : std::find_if(arrived_.begin(), arrived_.end(),
                                            [tag](task* t) { return t->tag_ == tag; });
    if (it == arrived_.end()) return nullptr;
    task* found = *it;
    arrived_.erase(it);
    std::size_t taken = 1;
    if (tag == any_tag) {
      batch = std::min(batch, arrived_.size() / 2);
      for (std::size_t k = batch; k > 0; --k) sink(arrived_[k - 1]);
      arrived_.erase(arrived_.begin(), arrived_.begin() + static_cast<std::ptrdiff_t>(batch));
      taken += batch;
    }
    count_.fetch_sub(taken, std::memory_order_relaxed);
    return found;
  }

 private:
  // Consumer side of the MPSC list, under consumer_mutex_. Returns nullptr when empty, or when a
  // producer is between its exchange and its link (the task shows up on a later call; that
  // producer's wake-up follows its link).
  task* pop_linked() noexcept {
    task* tail = tail_;
    task* next = tail->next_.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) return nullptr;
      tail_ = next;
      tail = next;
      next = next->next_.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;
    // tail is the last task: put the stub behind it so tail can be handed out.
    stub_.next_.store(nullptr, std::memory_order_relaxed);
    task* previous = head_.exchange(&stub_, std::memory_order_acq_rel);
    previous->next_.store(&stub_, std::memory_order_release);
    next = tail->next_.load(std::memory_order_acquire);
    if (next == nullptr) return nullptr;
    tail_ = next;
    return tail;
  }

  static void never_run(task*) noexcept {}

  task stub_{&never_run};
  alignas(64) std::atomic<task*> head_{&stub_};
  alignas(64) std::atomic<std::size_t> count_{0};
  alignas(64) std::mutex consumer_mutex_;
  task* tail_ = &stub_;        // consumer_mutex_
  std::deque<task*> arrived_;  // consumer_mutex_
};

}  // namespace parallel::detail
