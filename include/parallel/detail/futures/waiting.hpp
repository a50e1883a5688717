// How a thread waits on many futures at once (wait.hpp: as_completed, wait_any, wait_all): a hook
// on each future's completion (completion.hpp) wakes the waiter; nothing polls.
#pragma once

#include <chrono>
#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "completion.hpp"
#include "state.hpp"

namespace parallel {

namespace detail {

template <class T>
struct future_value;
template <class R>
struct future_value<future<R>> {
  using type = R;
};

/// A range whose elements are parallel::future<R> objects, reached by reference.
template <class Range>
concept range_of_futures = std::ranges::input_range<Range> &&
    std::is_lvalue_reference_v<std::ranges::range_reference_t<Range>> && requires {
  typename future_value<std::ranges::range_value_t<Range>>::type;
};

template <class Range>
using futures_result_t = typename future_value<std::ranges::range_value_t<Range>>::type;

using deadline_t = std::chrono::steady_clock::time_point;

/// now + timeout, saturated (a timeout of hours::max() means "no deadline" in practice).
template <class Rep, class Period>
deadline_t deadline_after(std::chrono::duration<Rep, Period> timeout) {
  const auto now = std::chrono::steady_clock::now();
  const auto left = std::chrono::duration_cast<std::chrono::duration<double>>(timeout);
  if (left >= std::chrono::hours(24 * 365 * 100)) return now + std::chrono::hours(24 * 365 * 100);
  if (left <= left.zero()) return now;
  return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
}

/// The futures of a range, in its order, and the watch that waits on them.
template <class R>
class future_set {
 public:
  template <class Range>
  explicit future_set(Range& futs) {
    for (future<R>& f : futs) items_.push_back(&f);
  }

  std::size_t size() const noexcept { return items_.size(); }
  future<R>& operator[](std::size_t i) const noexcept { return *items_[i]; }
  future_state<R>* state(std::size_t i) const noexcept { return future_access::state(*items_[i]); }

  /// Watches every future that holds a state and is not ready yet; returns how many. (A
  /// waiting worker of a futures' thread pool helps it meanwhile, as future::wait does.)
  std::size_t watch_pending() {
    scheduler* helper = nullptr;
    for (std::size_t i = 0; i < size() && helper == nullptr; ++i) {
      future_state<R>* s = state(i);
      if (s != nullptr && s->pool_ != nullptr && s->pool_->on_worker()) helper = s->pool_;
    }
    watch_ = std::make_unique<completion_watch>(size(), helper,
                                                helper != nullptr ? helper->current_tag() : 0);
    std::size_t pending = 0;
    for (std::size_t i = 0; i < size(); ++i) {
      future_state<R>* s = state(i);
      if (s == nullptr) continue;
      watch_->watch(i, s->hooks_);  // a finished (or cancelled) one counts at once
      ++pending;
    }
    return pending;
  }

  /// The index of the next future to finish; nullopt at the deadline.
  std::optional<std::size_t> next(const deadline_t* deadline) { return watch_->next(deadline); }

 private:
  std::vector<future<R>*> items_;
  std::unique_ptr<completion_watch> watch_;
};

template <class R>
std::optional<std::size_t> wait_any_until(future_set<R>& futs, const deadline_t* deadline) {
  for (std::size_t i = 0; i < futs.size(); ++i)
    if (futs[i].is_ready()) return i;
  if (futs.watch_pending() == 0) return std::nullopt;
  const std::optional<std::size_t> first = futs.next(deadline);
  if (first) futs.state(*first)->settle();
  return first;
}

template <class R>
bool wait_all_until(future_set<R>& futs, const deadline_t* deadline) {
  std::size_t pending = futs.watch_pending();
  for (; pending > 0; --pending)
    if (!futs.next(deadline)) return false;
  for (std::size_t i = 0; i < futs.size(); ++i)
    if (futs.state(i) != nullptr) futs.state(i)->settle();
  return true;
}

/// What as_completed returns: an input range over the futures, each yielded once it finished.
template <class R>
class completion_range {
 public:
  template <class Range>
  completion_range(Range& futs, std::optional<deadline_t> deadline)
      : futs_(std::make_unique<future_set<R>>(futs)), deadline_(deadline) {}

  class iterator {
   public:
    using value_type = future<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(completion_range* owner) : owner_(owner) {}
    future<R>& operator*() const { return (*owner_->futs_)[*owner_->current_]; }
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.owner_ == nullptr || it.owner_->at_end();
    }

   private:
    completion_range* owner_ = nullptr;
  };

  /// Starts watching and waits for the first future to finish.
  iterator begin() {
    left_ = futs_->watch_pending();
    advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }
  bool at_end() const noexcept { return !current_; }

 private:
  void advance() {
    current_.reset();
    while (left_ > 0) {
      const std::optional<std::size_t> i = futs_->next(deadline_ ? &*deadline_ : nullptr);
      if (!i) {
        throw timeout_error("parallel::as_completed: " + std::to_string(left_) +
                            " future(s) had not finished when the timeout passed");
      }
      --left_;
      // A future emptied meanwhile (its get() or then() was called in the loop) is skipped.
      if (!(*futs_)[*i].valid()) continue;
      futs_->state(*i)->settle();
      current_ = *i;
      return;
    }
  }

  std::unique_ptr<future_set<R>> futs_;
  std::optional<deadline_t> deadline_;
  std::size_t left_ = 0;
  std::optional<std::size_t> current_;
};

}  // namespace detail

}  // namespace parallel
