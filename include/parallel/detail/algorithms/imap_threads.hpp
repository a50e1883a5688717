// imap and imap_unordered on the thread pool: a window of chunks in flight, refilled as the
// consumer takes results. The input is read only here, in the consumer's thread, at most
// max_in_flight items ahead of what the consumer has taken, so unbounded inputs work.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../../policy.hpp"
#include "../scheduler/pool_lease.hpp"
#include "../scheduler/scheduler.hpp"
#include "sequential.hpp"

namespace parallel::detail {

template <class F, class View, bool Ordered>
class threaded_imap_state {
  static constexpr bool in_place =
      std::ranges::random_access_range<View> && std::ranges::sized_range<View>;
  using input_value = std::ranges::range_value_t<View>;
  using clock = std::chrono::steady_clock;
  static constexpr std::size_t no_failure = std::numeric_limits<std::size_t>::max();
  static constexpr auto chunk_target = std::chrono::microseconds(100);

 public:
  using value_type = sequential_result_t<F, View>;

  struct chunk;

  // What the pool runs for a chunk: a task of its own, so that the consumer may run the chunk
  // itself instead (claim) while the task is still queued: a worker that reaches it first
  // computes the chunk, and the chunk frees the ticket once done; a consumer that abandons it
  // computes the chunk itself, and the ticket frees itself when a worker reaches it.
  struct ticket : abandonable_task<ticket> {
    ticket(chunk& c, isolation_tag tag) : abandonable_task<ticket>(tag), work(&c) {}
    void run() noexcept { work->owner->compute(*work); }
    chunk* work;
  };

  struct chunk {
    chunk(threaded_imap_state& s, std::size_t first_item) : owner(&s), first(first_item) {}
    chunk(const chunk&) = delete;
    chunk& operator=(const chunk&) = delete;
    ~chunk() { delete pending; }  // ran by a worker (done), or never queued

    threaded_imap_state* owner;
    ticket* pending = nullptr;        // the pool's task for it, until the consumer claims it
    std::size_t first;                // index of the first item in the input
    std::size_t count = 0;            // items in this chunk
    std::vector<input_value> inputs;  // unless read in place
    std::vector<std::optional<value_type>> results;
    std::size_t produced = 0;  // results[0, produced) are valid
    std::exception_ptr error;  // thrown by item first + produced
    clock::duration took{};
    latch done;
  };

  threaded_imap_state(pool_lease pool, F f, View items, const options& opts)
      : lease_(std::move(pool)),
        pool_(lease_.pool()),
        tag_(pool_.new_tag()),
        f_(std::move(f)),
        items_(std::move(items)),
        chunksize_(opts.chunksize),
        max_in_flight_(opts.max_in_flight),
        progress_(opts.progress),
        total_(known_size(items_)),
        may_claim_(pool_.may_run_here()),
        next_(std::ranges::begin(items_)) {
    if constexpr (in_place) origin_ = next_;
  }

  threaded_imap_state(const threaded_imap_state&) = delete;
  threaded_imap_state& operator=(const threaded_imap_state&) = delete;

  /// Leaving the loop early: chunks not started are abandoned (their tasks end at once when a
  /// worker runs them); running chunks finish their current item and are waited for.
  ~threaded_imap_state() {
    failed_at_.store(0, std::memory_order_relaxed);
    for (auto& c : window_)
      if (!abandon(*c)) pool_.wait(c->done, tag_);
  }

  /// Moves to the next result; false at the end. Rethrows a task's exception once every result
  /// before it was delivered.
  bool advance() {
    if (current_ && ++position_ < current_->produced) [[likely]]
      return report();
    return next_chunk();
  }

  value_type& current() { return *current_->results[position_]; }

 private:
  // advance() at the end of the current chunk.
  bool next_chunk() {
    if (current_) {
      if (current_->error) {
        auto error = current_->error;
        current_.reset();
        finished_ = true;
        std::rethrow_exception(error);
      }
      in_flight_ -= current_->count;
      current_.reset();
    }
    while (!finished_) {
      refill();
      if (window_.empty()) {
        finished_ = true;
        // The input failed: every item read before it was delivered first (Python's Pool).
        if (input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
        if (progress_ && (delivered_ == 0 || total_ != delivered_))
          progress_(delivered_, delivered_);
        return false;
      }
      current_ = take_next();
      learn(*current_);
      position_ = 0;
      if (current_->produced > 0) return report();
      if (current_->error) return advance();  // fails at its first item
      in_flight_ -= current_->count;
      current_.reset();
    }
    return false;
  }

  bool report() {
    ++delivered_;
    if (progress_) progress_(delivered_, total_);
    return true;
  }

  void compute(chunk& c) noexcept {
    const auto start = clock::now();
    c.results.reserve(c.count);
    for (std::size_t k = 0; k < c.count; ++k) {
      const std::size_t index = c.first + k;
      if (index > failed_at_.load(std::memory_order_relaxed)) break;
      try {
        if constexpr (in_place)
          c.results.emplace_back(
              std::invoke(f_, origin_[static_cast<std::ranges::range_difference_t<View>>(index)]));
        else
          c.results.emplace_back(std::invoke(f_, std::move(c.inputs[k])));
      } catch (...) {
        c.error = std::current_exception();
        lower_failed_at(index);
        break;
      }
      c.produced = k + 1;
    }
    c.took = clock::now() - start;
    if constexpr (!Ordered) {
      {
        std::lock_guard lock(completed_mutex_);
        completed_.push_back(&c);
      }
      any_done_.set();
    }
    c.done.set();  // last touch of the chunk: the consumer may free it now
  }

  // Takes chunk c from the pool if no worker has started it: its task will end at once when a
  // worker runs it. Whoever abandons it must compute it (or drop it: the destructor).
  static bool abandon(chunk& c) noexcept {
    if (c.pending == nullptr || !c.pending->abandon()) return false;
    c.pending = nullptr;  // the ticket frees itself now
    return true;
  }

  // While the consumer waits for a result: runs the first chunk of the window that no worker
  // has started, as a worker would, so that the consumer's core computes instead of sleeping
  // until a worker wakes it. False when every chunk is under way (or the pool's items may only
  // run on its own threads). 1e4 items of ~100 ns on 2 cores: 551-689 us a call with a
  // sleeping consumer, the map 424-489 (the consumer slept, was woken for each chunk, and took
  // a core from a worker each time).
  bool claim_one() {
    if (!may_claim_) return false;
    for (auto& c : window_) {
      if (abandon(*c)) {
        compute(*c);
        return true;
      }
    }
    return false;
  }

  void lower_failed_at(std::size_t index) noexcept {
    std::size_t seen = failed_at_.load(std::memory_order_relaxed);
    while (index < seen &&
           !failed_at_.compare_exchange_weak(seen, index, std::memory_order_relaxed)) {
    }
  }

  // The automatic window: 16 chunks of ~chunk_target per worker. The consumer refills it as it
  // takes results, but a consumer woken while every core runs a worker often gets no core until
  // one of them idles (the kernel lets the running thread finish its slice, ~ms): with 4 chunks
  // per worker the workers ran dry meanwhile (1e4 items of ~110 ns on 2 cores: the first result
  // taken at 313 us though ready at 93, one worker idle for 74 us; 773-864 us a call, 668-723 us
  // with 16, the map 565-626).
  std::size_t window_limit() const noexcept {
    if (max_in_flight_ != 0) return max_in_flight_;
    return std::clamp<std::size_t>(16 * pool_.size() * chunk_size(), 16, std::size_t{1} << 16);
  }

  std::size_t chunk_size() const noexcept {
    if (chunksize_ != 0) return chunksize_;
    std::size_t size = learned_chunk_;
    // A known number of items: at least eight chunks per worker, so the last chunk, run while
    // the other workers may have nothing left, is a small share of the call.
    const std::size_t workers = std::max<std::size_t>(1, pool_.size());
    if (total_ != 0) size = std::min(size, std::max<std::size_t>(1, total_ / (8 * workers)));
    // Keep at least two chunks per worker in the window, so nobody starves at the end of one.
    if (max_in_flight_ != 0)
      size = std::min(size, std::max<std::size_t>(
                                1, max_in_flight_ / (2 * std::max<std::size_t>(1, pool_.size()))));
    return size;
  }

  // After each chunk: aim the automatic chunk size at ~chunk_target of work.
  void learn(const chunk& c) noexcept {
    if (chunksize_ != 0 || c.produced == 0) return;
    const auto per_item = std::max<clock::duration::rep>(
        1, c.took.count() / static_cast<clock::duration::rep>(c.produced));
    const auto wanted = static_cast<std::size_t>(
        std::chrono::duration_cast<clock::duration>(chunk_target).count() / per_item);
    learned_chunk_ = std::clamp<std::size_t>(wanted, 1, 4096);
    last_learned_chunk_.store(learned_chunk_, std::memory_order_relaxed);
  }

  void refill() {
    const std::size_t limit = window_limit();
    while (!input_done_ && failed_at_.load(std::memory_order_relaxed) == no_failure) {
      const std::size_t room = limit > in_flight_ ? limit - in_flight_ : 0;
      const std::size_t size = std::min(chunk_size(), limit);
      if (room == 0 || (room < size && !window_.empty())) return;
      auto c = std::make_unique<chunk>(*this, read_);
      const std::size_t want = std::min(size, room);
      if constexpr (in_place) {
        // Read where it is, by index (origin_): the chunk is only a count, taken at once.
        c->count = std::min(want, total_ - read_);
        input_done_ = read_ + c->count == total_;
      } else {
        read_items(*c, want);
      }
      if (c->count == 0) return;
      read_ += c->count;
      in_flight_ += c->count;
      chunk* raw = c.get();
      auto queued = pool_.size() != 0 ? std::make_unique<ticket>(*raw, tag_) : nullptr;
      window_.push_back(std::move(c));
      if (queued) {
        raw->pending = queued.release();
        pool_.spawn(raw->pending);
      } else {
        compute(*raw);  // a default pool that got no thread: the consumer runs the chunk
      }
    }
  }

  // Copies up to `want` items of an input not read in place into chunk c.
  void read_items(chunk& c, std::size_t want) {
    try {
      // The input moves past an item only when the next one is wanted: a generator computes
      // item k + 1 no sooner than max_in_flight allows.
      while (c.count < want) {
        if (taken_) {
          taken_ = false;
          ++next_;
        }
        if (next_ == std::ranges::end(items_)) {
          input_done_ = true;
          break;
        }
        c.inputs.push_back(*next_);
        taken_ = true;
        ++c.count;
      }
    } catch (...) {
      // The input itself threw (its * or ++): what it gave before still runs and is delivered;
      // then the caller gets this exception.
      input_error_ = std::current_exception();
      input_done_ = true;
    }
  }

  std::unique_ptr<chunk> take_next() {
    auto it = window_.begin();
    if constexpr (Ordered) {
      while (!(*it)->done.is_set() && claim_one()) {
      }
      pool_.wait((*it)->done, tag_, scheduler::expect::long_wait);
    } else {
      chunk* ready = nullptr;
      while (ready == nullptr) {
        any_done_.reset();
        {
          std::lock_guard lock(completed_mutex_);
          if (!completed_.empty()) {
            ready = completed_.front();
            completed_.pop_front();
          }
        }
        if (ready == nullptr && !claim_one())
          pool_.wait(any_done_, tag_, scheduler::expect::long_wait);
      }
      it = std::find_if(window_.begin(), window_.end(),
                        [ready](auto& c) { return c.get() == ready; });
      pool_.wait(ready->done, tag_);
    }
    auto taken = std::move(*it);
    window_.erase(it);
    return taken;
  }

  pool_lease lease_;  // first: released after the destructor has waited for every chunk
  scheduler& pool_;
  isolation_tag tag_;
  F f_;
  View items_;
  std::size_t chunksize_;
  std::size_t max_in_flight_;
  progress progress_;
  std::size_t total_;
  bool may_claim_;  // the consumer may run chunks itself (scheduler::may_run_here)
  std::ranges::iterator_t<View> next_;
  // Where workers read random-access input (copied once; a single-pass input's iterator may be
  // move-only, and it is never read in place).
  std::conditional_t<in_place, std::ranges::iterator_t<View>, std::monostate> origin_{};
  bool taken_ = false;              // *next_ was read: move past it before reading the next item
  std::exception_ptr input_error_;  // thrown by the input, delivered after its items' results
  std::size_t read_ = 0;            // items read from the input
  std::size_t in_flight_ = 0;       // read but not yet consumed
  std::size_t delivered_ = 0;
  // The next call of this f over this input type starts from the size this one learned.
  std::size_t learned_chunk_ =
      std::max<std::size_t>(1, last_learned_chunk_.load(std::memory_order_relaxed));
  bool input_done_ = false;
  bool finished_ = false;
  std::deque<std::unique_ptr<chunk>> window_;  // in input order
  std::unique_ptr<chunk> current_;
  std::size_t position_ = 0;
  std::atomic<std::size_t> failed_at_{no_failure};  // items after it are skipped
  std::mutex completed_mutex_;
  std::deque<chunk*> completed_;
  latch any_done_;
  alignas(64) static inline std::atomic<std::size_t> last_learned_chunk_{0};
};

/// The lazy range imap and imap_unordered return: iterate it once.
template <class State>
class imap_view {
 public:
  using value_type = typename State::value_type;

  explicit imap_view(std::unique_ptr<State> state) : state_(std::move(state)) {}

  class iterator {
   public:
    using value_type = imap_view::value_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(State* state, bool at_end) : state_(state), at_end_(at_end) {}
    value_type& operator*() const { return state_->current(); }
    iterator& operator++() {
      at_end_ = !state_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end_; }

   private:
    State* state_ = nullptr;
    bool at_end_ = true;
  };

  /// Starts the work and waits for the first result.
  iterator begin() {
    const bool has_first = state_->advance();
    return iterator(state_.get(), !has_first);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  std::unique_ptr<State> state_;
};

}  // namespace parallel::detail
