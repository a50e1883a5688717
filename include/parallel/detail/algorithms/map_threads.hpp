// map on the thread pool. Random-access input is split in place. With automatic chunking an
// outside caller starts alone, and what it does not finish inline it shares with the pool: the
// caller and up to size() - 1 workers each take blocks of ~20 us from the front of a contiguous
// range of their own, then from the others' ranges, shrinking towards the end so that they end
// together. A map on a worker (nested) halves its range only when a worker is hungry (lazy
// binary splitting): cheap items end up in long tight loops, expensive or irregular items get
// spread. When one item alone outlasts a block, half the rest is offered before each item, so a
// worker that turns hungry does not wait for the current item to end.
// Between calls, what an item of this f cost decides whether a call runs inline in the caller or
// is shared at once; items known to be long (or few items of unknown cost) are handed out one at
// a time instead.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "../../policy.hpp"
#include "../no_result.hpp"
#include "../scheduler/scheduler.hpp"
#include "common.hpp"

namespace parallel::detail {

/// What one item of a map's f costs, in ns, as its blocks measured it (0 = never measured):
/// one per f and input type, shared by every thread of every call, read and written relaxed,
/// and taken as known only for the function it measured (callable_identity).
///
/// A block is timed by the wall clock, so a block whose thread was preempted, or shared its core
/// with another worker, looks many times slower than its items are. A lower cost is believed at
/// once; one over twice the estimate only when the next block measured confirms it. Taken at
/// once, one such block sent the next calls to the pool: 3000 items of ~1.5 ns (4.5 us, a call
/// to run inline) went to the pool in 9-62% of 5000 calls, on estimates of 30-40 ns. A low
/// estimate costs less: an inline start shares the rest with the pool when its time is up.
class item_cost_estimate {
 public:
  /// The estimate for the function `identity` names (callable_identity); 0 when the last one
  /// measured was another.
  std::uint64_t ns(std::uint64_t identity) const noexcept {
    if (identity == 0 || of_.load(std::memory_order_relaxed) != identity) return 0;
    return ns_.load(std::memory_order_relaxed);
  }

  /// Whether the last block measured took over twice the estimate, unconfirmed yet.
  bool doubted() const noexcept { return slower_seen_.load(std::memory_order_relaxed); }

  /// One block's measure of function `identity`: `ns_per_item` (at least 1). Writes only when
  /// the estimate is off by more than 2x, or the doubt about it changes, or it was of another
  /// function: a store per block would bounce this line between the workers (measured: one of
  /// two workers ~25% slower on 50 ns items).
  void learn(std::uint64_t ns_per_item, std::uint64_t identity) noexcept {
    if (identity == 0) return;
    if (of_.load(std::memory_order_relaxed) != identity) {
      ns_.store(ns_per_item, std::memory_order_relaxed);
      slower_seen_.store(false, std::memory_order_relaxed);
      of_.store(identity, std::memory_order_relaxed);
      return;
    }
    const std::uint64_t known = ns_.load(std::memory_order_relaxed);
    const bool slower = known != 0 && ns_per_item > 2 * known;
    // Two threads may both confirm, or a racing block clear a doubt: the estimate still only
    // takes values that blocks measured.
    const bool doubted = slower_seen_.load(std::memory_order_relaxed);
    if (slower && !doubted) {
      slower_seen_.store(true, std::memory_order_relaxed);
      return;
    }
    if (doubted) slower_seen_.store(false, std::memory_order_relaxed);
    if (known == 0 || slower || 2 * ns_per_item < known)
      ns_.store(ns_per_item, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint64_t> ns_{0};
  std::atomic<std::uint64_t> of_{0};      // callable_identity of the function measured
  std::atomic<bool> slower_seen_{false};  // the last block measured over twice the estimate
};

template <class F, class Input, class R>
class threaded_map {
  using clock = std::chrono::steady_clock;
  // A block of items runs between two looks at the clock and at hungry workers; its length
  // adapts so that a block lasts roughly this long.
  static constexpr auto block_target = std::chrono::microseconds(20);
  // An outside caller runs the first items itself for up to this long: inputs that finish
  // within it never wake the pool.
  static constexpr auto inline_budget = std::chrono::microseconds(25);
  static constexpr std::size_t max_block = std::size_t{1} << 20;
  // Items at least this long (as last measured) are handed out one at a time.
  static constexpr std::uint64_t long_item_ns = 100'000;
  // A call whose items are known to take this long at most in all runs inline and untimed:
  // reading the clock twice (~25 ns each on a VM's kvm-clock) costs more than such a call's
  // items (10 items of 1 ns: 23 ns in a loop, 84 ns as a timed map). One such call in
  // `time_every` is timed, so the estimate follows an f whose items got slower; when it
  // measured them slower, the next call is timed too (untimed_turn), which confirms it. A timed
  // call costs ~60 ns more than an untimed one here: at one in 64, a 10 x 1 ns call ran at 0.95x
  // the loop, 0.99x at one in 1024 (~0.9 ns of its ~25). One in 128, with the confirmation at
  // once, sees a slower f about as soon as one in 64 confirmed it a turn later did.
  static constexpr std::uint64_t untimed_call_ns = 2'000;
  static constexpr unsigned time_every = 128;
  // touch_together's threads take the results' pages 8 at a time (~20-40 us here).
  static constexpr std::size_t touch_run = std::size_t{32} << 10;

 public:
  /// `identity`: callable_identity(f), which the caller computed for plain_loop_will_do.
  threaded_map(scheduler& pool, F& f, std::uint64_t identity, Input& input, const options& opts)
      : pool_(pool),
        f_(f),
        identity_(identity),
        input_(input),
        results_(input.size(), slots_start::reserved),
        chunksize_(opts.chunksize),
        progress_(opts.progress, input.size()) {}

  /// A call known to be too short to time or share (untimed_turn) runs as a plain loop: the
  /// results written by index into a vector made with all of them (appended, for a type that
  /// cannot be), what f throws going straight to the caller, progress reported once at the end.
  /// It skips the map's bookkeeping, which on calls of 1 to 10 items of ~1 ns cost 11-16 ns over
  /// the loop's 22-37 ns (2.5-3 ns now). Not appended when it can be written: push_back checks
  /// the capacity at every item, so a loop of it does not vectorise, and after each call of an f
  /// not inlined it reloads the vector's end and capacity from memory (x*3+1 over 1000 ints,
  /// paired: 0.81x a loop that writes by index when appended, 1.01x written).
  static bool plain_loop_will_do(const scheduler& pool, std::uint64_t identity, std::size_t n,
                                 const options& opts) {
    return pool.may_run_here() && short_enough(identity, n, opts);
  }
  /// plain_loop_will_do for a pool whose items may run in the caller.
  static bool short_enough(std::uint64_t identity, std::size_t n, const options& opts) {
    return opts.chunksize == 0 && untimed_turn(n, identity);
  }
  static std::vector<R> plain_loop(F& f, Input& input, const progress& report) {
    const std::size_t n = input.size();
    std::vector<R> out;
    if constexpr (written_in_place<R>) {
      // As result_slots::fill writes, without the slots (through them, 1 and 10 items of ~1 ns
      // ran at 0.80x and 0.84-0.87x the loop, paired; 0.99x and 0.97x like this).
      out.resize(n);
      R* const slot = out.data();
      input.each(0, n, [slot, &f](std::size_t i, auto&& item) {
        slot[i] = std::invoke(f, std::forward<decltype(item)>(item));
      });
    } else {
      out.reserve(n);
      input.each(0, n, [&out, &f](std::size_t, auto&& item) {
        out.push_back(std::invoke(f, std::forward<decltype(item)>(item)));
      });
    }
    if (report) report(n, n);
    return out;
  }

  std::vector<R> run() {
    const std::size_t n = input_.size();
    if (n != 0) {
      tag_ = pool_.new_tag();
      open_results();
      // The caller runs the call itself when a default pool got no thread, or when the call is
      // a single chunk (not worth waking anyone); never when the pool prepares its own threads
      // for the items (an initializer): then only they run them.
      const bool may_run_here = pool_.may_run_here();
      const bool caller_runs =
          pool_.size() == 0 || (may_run_here && chunksize_ != 0 && n <= chunksize_);
      if (pool_.on_worker())
        spread(0, n, first_block());
      else if (caller_runs)
        run_block(0, n);
      else if (chunksize_ == 0 && few_or_long(n) && may_run_here)
        share_with_pool(0, n, 1, ranges::one);  // one item at a time, in order
      else if (chunksize_ == 0 && few_or_long(n))
        hand_out_one_by_one(n);
      else if (chunksize_ == 0 && may_run_here)
        start_from_outside(n);
      else
        hand_to_pool(0, n, chunksize_ == 0 ? first_block() : 1);
    }
    failure_.rethrow_if_failed();
    if (progress_.enabled()) progress_.finish();
    return results_.take();
  }

 private:
  // Value-initialises the results, their pages touched first by the caller and idle workers
  // together when they were mapped in ahead in 4 KiB pages (256 KiB to 1 MiB: result_slots::
  // untouched). On this VM the first write to each such page costs 2.5-5 us (the host maps it
  // then), most of a cheap map's time, and the vector's zero-fill paid it in the caller alone:
  // 1e5 results of 8 bytes, ~0.9 ms of first touch against ~0.13 ms of items of ~1.3 ns. Two
  // threads touch 800 KB in ~360 us instead of ~550 (one idle worker spinning), and the worker
  // woken for it is awake when the items are shared. Only when a worker is idle (looking for
  // work, or asleep): the caller must not wait behind another call's items. Not on a worker: a
  // nested map's results are a share of an outer call's, whose workers are busy. Huge pages are
  // not shared: faulting 2 MiB pages from three threads on two cores made calls erratic (1e7
  // results: 5-95 ms where the caller alone took ~7).
  void open_results() {
    touch_at_ = results_.untouched();
    if (!touch_at_.empty() && pool_.size() > 1 && !pool_.on_worker() &&
        (pool_.hungry() || pool_.asleep()))
      touch_together();
    results_.open();
  }

  // The caller and up to size() - 1 workers touch touch_at_'s pages, a run of pages at a time
  // from one cursor: a worker that wakes late takes what is left, and the caller waits for one
  // run at most of each helper that started (one still queued is abandoned).
  void touch_together() {
    struct toucher : abandonable_task<toucher> {
      explicit toucher(threaded_map& m) : abandonable_task<toucher>(m.tag_), map_(&m) {}
      void run() noexcept {
        map_->touch_runs();
        done_.set();  // the caller frees it
      }
      threaded_map* map_;
      latch done_;
    };
    next_touch_.store(0, std::memory_order_relaxed);
    const std::size_t runs = (touch_at_.size() + touch_run - 1) / touch_run;
    beside_helpers(
        std::min(pool_.size() - 1, runs - 1), [this] { return std::make_unique<toucher>(*this); },
        [this] { touch_runs(); });
  }

  // Queues `count` helpers made by make() (abandonable_tasks that set their latch done_ as their
  // last step), runs own() in the caller meanwhile, then waits for each helper that started (at
  // most its last piece of work is left) and abandons each still queued (its worker busy with
  // another call): that one frees itself when it runs.
  template <class Make, class Own>
  void beside_helpers(std::size_t count, Make make, Own own) {
    std::vector<decltype(make())> helpers;
    helpers.reserve(count);
    for (std::size_t k = 0; k < count; ++k) helpers.push_back(make());
    for (auto& h : helpers) pool_.spawn(h.get());
    own();
    for (auto& h : helpers) {
      if (h->abandon())
        (void)h.release();  // still queued: it frees itself when a worker runs it
      else
        pool_.wait(h->done_, tag_);
    }
  }

  void touch_runs() noexcept {
    for (;;) {
      const std::size_t first = next_touch_.fetch_add(touch_run, std::memory_order_relaxed);
      if (first >= touch_at_.size()) return;
      touch_pages(touch_at_.subspan(first, std::min(touch_run, touch_at_.size() - first)));
    }
  }

  // Whether a call of n items is short enough, as far as is known, to run without a look at
  // the clock, and it is not this call's turn to be timed (one in time_every is).
  static bool untimed_turn(std::size_t n, std::uint64_t identity) noexcept {
    const std::uint64_t cost = item_cost_.ns(identity);
    // No division: one costs as much as a call of one cheap item.
    if (cost == 0 || cost > untimed_call_ns || n > untimed_call_ns || n * cost > untimed_call_ns ||
        item_cost_.doubted())
      return false;
    // Relaxed load and store, not an increment: two threads may count one call; no matter.
    const unsigned calls = untimed_calls_.load(std::memory_order_relaxed) + 1;
    untimed_calls_.store(calls, std::memory_order_relaxed);
    return calls % time_every != 0;
  }

  // An outside caller runs a cheap input itself and hands an expensive one to the pool. What an
  // item cost last time (this f, on this input type) decides; when it is not known yet, a long
  // input is probed inline for a few microseconds, and a short one (where one slow item run alone
  // would be a large share of the whole) goes to the pool at once.
  void start_from_outside(std::size_t n) {
    const std::uint64_t cost = item_cost_.ns(identity_);
    const auto budget_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(inline_budget).count());
    const bool expensive = cost != 0 ? cost * n > budget_ns : n <= 16 * pool_.size();
    std::size_t first = 0;
    std::size_t block = first_block();
    if (!expensive) first = run_inline(block);
    if (first < n) share_with_pool(first, n, block, ranges::one_per_sharer);
  }

  // How share_with_pool's items are split among its sharers: `one_per_sharer`, a contiguous
  // range each, taken from its front by its owner and then by the others once theirs is done
  // (no counter shared while each is in its own, and each thread's items are adjacent in
  // memory); `one`, a single range from which all of them take in turn, so that items start in
  // input order (items handed out one at a time: sleeps and long items start as they come).
  enum class ranges { one, one_per_sharer };

  // The rest of an outside call, [first, last): the caller and up to size() - 1 of the pool's
  // workers (helpers) take blocks from `ranges`, so the call runs on size() threads and the
  // caller is one of them. Handed to the pool whole instead, the caller slept meanwhile, and the
  // wake-up at the end cost 6.9 us of a 79 us call (100 items of 1.35 us; OpenMP and oneTBB,
  // whose caller works too: 70-72 us). Long items go this way too, a block of one at a time
  // (1e3 items of ~140 us, the worst of 21 calls: 1.80-1.82x the loop handed out to both
  // workers while the caller slept, 1.95x shared). The caller waits only for helpers that
  // started: one still queued (its worker busy with another call) is abandoned, and frees itself
  // when it runs; its range is taken by the others.
  void share_with_pool(std::size_t first, std::size_t last, std::size_t block, ranges split) {
    struct helper : abandonable_task<helper> {
      helper(threaded_map& m, std::size_t b, std::size_t r)
          : abandonable_task<helper>(m.tag_), map_(&m), block_(b), range_(r) {}
      void run() noexcept {
        map_->take_blocks(range_, block_);
        done_.set();  // the caller frees it
      }
      threaded_map* map_;
      std::size_t block_;
      std::size_t range_;
      latch done_;
    };
    const std::size_t blocks = (last - first + block - 1) / block;
    sharers_ = 1 + std::min(pool_.size() - 1, blocks - 1);
    open_ranges(first, last, split == ranges::one ? 1 : sharers_);
    std::size_t next_helper = 1;
    beside_helpers(
        sharers_ - 1,
        [this, block, &next_helper] {
          return std::make_unique<helper>(*this, block, next_helper++ % range_count_);
        },
        [this, block] { take_blocks(0, block); });
  }

  // [first, last) as `count` contiguous ranges of (nearly) equal length: ranges_.
  void open_ranges(std::size_t first, std::size_t last, std::size_t count) {
    range_count_ = count;
    ranges_ = std::make_unique<range[]>(count);
    for (std::size_t k = 0; k < count; ++k) {
      ranges_[k].next.store(first + (last - first) * k / count, std::memory_order_relaxed);
      ranges_[k].end = first + (last - first) * (k + 1) / count;
    }
  }

  // One sharer's part of share_with_pool: blocks from range `own` until it is done, then from
  // each other range in turn; blocks of about block_target each, and never more than a
  // 2 x sharers_-th of what is left of their range, so that the sharers end together.
  void take_blocks(std::size_t own, std::size_t block) noexcept {
    auto start = clock::now();
    for (std::size_t k = 0; k < range_count_; ++k) {
      range& r = ranges_[(own + k) % range_count_];
      for (;;) {
        if (failure_.failed()) return;
        const std::size_t seen = r.next.load(std::memory_order_relaxed);
        if (seen >= r.end) break;
        const std::size_t fair = std::max<std::size_t>(1, (r.end - seen) / (2 * sharers_));
        const std::size_t want = std::min(block, fair);
        const std::size_t first = r.next.fetch_add(want, std::memory_order_relaxed);
        if (first >= r.end) break;
        const std::size_t last = std::min(r.end, first + want);
        if (!run_block(first, last)) return;
        const auto now = clock::now();
        const auto took = now - start;
        learn_cost(took, last - first);
        start = now;
        block = next_block(block, took);
      }
    }
  }

  // Items known to be long, or few items of a cost not known yet: they are handed out one at a
  // time (share_with_pool from a block of 1, or hand_out_one_by_one on a pool whose items run
  // on its own threads only), since one slow item must not hold up others while a thread is
  // free, and a per-item hand-out costs nothing next to such items.
  bool few_or_long(std::size_t n) const noexcept {
    const std::uint64_t cost = item_cost_.ns(identity_);
    return cost != 0 ? cost >= long_item_ns : n <= 16 * pool_.size();
  }

  // Every worker takes the next item from a shared counter when it is free, as the queue of
  // Python's Pool.map at chunksize 1 does. Halving blindly gave one of 5 workers 3 of 10
  // sleeping items (0.3 s where 0.2 s is the least), and 32 sleeps of 100 ms on 16 workers took
  // 400 ms instead of 200. For a pool with hooks, whose items only its threads run; other
  // outside callers share such items with the pool (share_with_pool, one at a time), and nested
  // maps keep splitting lazily.
  void hand_out_one_by_one(std::size_t n) {
    struct taker : task {
      explicit taker(threaded_map& m) : task(&run, m.tag_), map_(&m) {}
      static void run(task* base) noexcept {
        auto* self = static_cast<taker*>(base);
        self->map_->take_items();
        self->done_.set();
      }
      threaded_map* map_;
      latch done_;
    };
    open_ranges(0, n, 1);
    const std::size_t count = std::min(n, pool_.size());
    const auto takers = std::make_unique<std::optional<taker>[]>(count);
    for (std::size_t k = 0; k < count; ++k) pool_.spawn(&takers[k].emplace(*this));
    for (std::size_t k = 0; k < count; ++k)
      pool_.wait(takers[k]->done_, tag_, scheduler::expect::long_wait);
  }

  void take_items() noexcept {
    range& items = ranges_[0];
    while (!failure_.failed()) {
      const std::size_t index = items.next.fetch_add(1, std::memory_order_relaxed);
      if (index >= items.end) return;
      const auto start = clock::now();
      if (!run_block(index, index + 1)) return;
      learn_cost(clock::now() - start, 1);
    }
  }

  // The next block's length after one of `block` items took `took`: twice as long while blocks
  // end under block_target, half when one took over four times it.
  static std::size_t next_block(std::size_t block, clock::duration took) noexcept {
    if (took < block_target) return std::min(block * 2, max_block);
    if (took > 4 * block_target && block > 1) return block / 2;
    return block;
  }

  std::size_t first_block() const noexcept {
    const std::uint64_t cost = item_cost_.ns(identity_);
    if (cost == 0) return 1;
    const auto target_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(block_target).count());
    return static_cast<std::size_t>(std::clamp<std::uint64_t>(target_ns / cost, 1, max_block));
  }

  // Called after every block by every thread of the call (item_cost_estimate::learn).
  void learn_cost(clock::duration took, std::size_t items) noexcept {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(took).count();
    item_cost_.learn(std::max<std::uint64_t>(1, static_cast<std::uint64_t>(ns) / items), identity_);
  }

  // Runs [first, last); false when it (or an earlier task) failed.
  bool run_block(std::size_t first, std::size_t last) noexcept {
    try {
      results_.fill(f_, input_, first, last);
      if (progress_.enabled()) progress_.add(last - first);
      return true;
    } catch (...) {
      failure_.capture();
      return false;
    }
  }

  std::size_t run_inline(std::size_t& block) {
    const std::size_t n = input_.size();
    const auto start = clock::now();
    auto block_start = start;
    std::size_t first = 0;
    while (first < n) {
      const std::size_t last = std::min(n, first + block);
      if (!run_block(first, last)) return n;
      const auto now = clock::now();
      learn_cost(now - block_start, last - first);
      block_start = now;
      first = last;
      if (now - start >= inline_budget) break;
      block = std::min(block * 2, max_block);
    }
    return first;
  }

  void hand_to_pool(std::size_t first, std::size_t last, std::size_t block) {
    struct root_task : task {
      root_task(threaded_map& m, std::size_t f, std::size_t l, std::size_t b)
          : task(&run, m.tag_), map_(&m), first_(f), last_(l), block_(b) {}
      static void run(task* base) noexcept {
        auto* self = static_cast<root_task*>(base);
        self->map_->spread(self->first_, self->last_, self->block_);
        self->done_.set();
      }
      threaded_map* map_;
      std::size_t first_, last_, block_;
      latch done_;
    };
    root_task root(*this, first, last, block);
    pool_.spawn(&root);
    pool_.wait(root.done_, tag_, scheduler::expect::long_wait);
  }

  void spread(std::size_t first, std::size_t last, std::size_t block) noexcept {
    if (chunksize_ != 0)
      split_by_chunks(first, last);
    else
      split_on_demand(first, last, block);
  }

  // options.chunksize: halve down to chunks of that many items, all queued eagerly.
  void split_by_chunks(std::size_t first, std::size_t last) noexcept {
    while (last - first > chunksize_) {
      if (failure_.failed()) return;
      const std::size_t chunks = (last - first + chunksize_ - 1) / chunksize_;
      const std::size_t mid = first + (chunks / 2) * chunksize_;
      pool_.join([&] { split_by_chunks(first, mid); }, [&, mid] { split_by_chunks(mid, last); },
                 tag_);
      return;
    }
    if (!failure_.failed()) run_block(first, last);
  }

  // long_items: the last block outlasted the target even at one item. Such items are not
  // waited on: half the rest is offered before the next one, so a worker that turns hungry takes
  // it at once instead of after our current item.
  void split_on_demand(std::size_t first, std::size_t last, std::size_t block,
                       bool long_items = false) noexcept {
    auto start = clock::now();
    while (first < last) {
      if (failure_.failed()) return;
      if (last - first >= 2 && pool_.should_split(long_items)) {
        const std::size_t mid = first + (last - first) / 2;
        pool_.join([&] { split_on_demand(first, mid, block, long_items); },
                   [&, mid] { split_on_demand(mid, last, block, long_items); }, tag_);
        return;
      }
      const std::size_t stop = std::min(last, first + block);
      if (!run_block(first, stop)) return;
      const auto now = clock::now();
      const auto took = now - start;
      learn_cost(took, stop - first);
      start = now;
      first = stop;
      block = next_block(block, took);
      long_items = block == 1 && took > 4 * block_target;
    }
  }

  scheduler& pool_;
  isolation_tag tag_ = any_tag;  // the call's own, once it may run tasks
  F& f_;
  std::uint64_t identity_;  // callable_identity(f_): whose cost item_cost_ holds
  Input& input_;
  result_slots<R> results_;
  std::size_t chunksize_;
  progress_reporter progress_;
  first_failure failure_;
  // share_with_pool's ranges (hand_out_one_by_one's: one): the next item of each (on a cache
  // line of its own: its owner takes from it at every block) and its end.
  struct alignas(64) range {
    std::atomic<std::size_t> next{0};
    std::size_t end = 0;
  };
  std::unique_ptr<range[]> ranges_;
  std::size_t range_count_ = 0;
  std::size_t sharers_ = 1;  // share_with_pool's threads: the caller and its helpers
  // The results' memory while touch_together touches it, and the next run of it.
  std::span<std::byte> touch_at_;
  std::atomic<std::size_t> next_touch_{0};
  // What one item of this f on this input type costs. On a cache line of its own: nothing
  // else's reads should miss when it changes.
  alignas(64) static inline item_cost_estimate item_cost_;
  // Counts untimed calls (untimed_turn); written at each, so on a line of its own too.
  alignas(64) static inline std::atomic<unsigned> untimed_calls_{0};
};

/// Whether a threads map runs in the caller as a plain loop (threaded_map::plain_loop): `ask`
/// (not known yet: map_on_threads asks plain_loop_will_do), `no` (asked: it does not; the
/// question counts calls, so it is asked once a call), `yes`.
enum class plain_loop { ask, no, yes };

/// Whether parallel::threads runs this map in the caller as a plain loop, decided before any
/// pool is leased: one item (there is nothing to share), or a call known too short to time or
/// share (threaded_map::plain_loop_will_do; the default pools have no hooks, so their items may
/// always run in the caller). Only for inputs that know their size without being walked (`ask`
/// otherwise). On a map of one ~1 ns item the lease, the function's identity and the
/// untimed-call count cost 18.9 ns where the loop took 13.2 (the full benchmark run of
/// 2026-12-06). `F&`, not `const F&`: F must be the very type map_on_threads makes its
/// threaded_map of, whose learned item cost this reads (a const function object deduced as
/// non-const here read another type's estimate, never learned: every short call of it went
/// through the whole map).
template <class F, class Range>
inline plain_loop threads_map_in_caller(F& f, Range& items, const options& opts) {
  if constexpr (std::ranges::sized_range<Range> && std::ranges::random_access_range<Range>) {
    const auto n = static_cast<std::size_t>(std::ranges::size(items));
    if (n == 1) return plain_loop::yes;
    using R = map_result_t<F, Range>;
    if constexpr (!std::is_void_v<R>) {
      return threaded_map<F, indexed_input<Range>, R>::short_enough(callable_identity(f), n, opts)
                 ? plain_loop::yes
                 : plain_loop::no;
    }
  }
  return plain_loop::ask;
}

/// map_on_threads once the call is known not to be a plain loop decided beforehand: asks
/// plain_loop_will_do when `plain` is ask, else runs the map on `pool`. Out of line: inlined,
/// this path's locals (the map's state, its result slots) made the frame of every caller of
/// parallel::map hundreds of bytes and six saved registers, which a call of one ~1 ns item paid
/// too (in the benchmark grid, where GCC left the verb out of line: 16.5 ns a call against the
/// loop's 14.3).
template <class F, class Range>
[[gnu::noinline]] auto map_on_pool(scheduler& pool, F& f, Range& items, const options& opts,
                                   plain_loop plain) {
  using input_t = indexed_input<Range>;
  using R = map_result_t<F, Range>;
  using map_t = threaded_map<F, input_t, R>;
  input_t input(items);
  const std::uint64_t identity = callable_identity(f);
  if (plain == plain_loop::ask && map_t::plain_loop_will_do(pool, identity, input.size(), opts))
    return map_t::plain_loop(f, input, opts.progress);
  return map_t(pool, f, identity, input, opts).run();
}

/// parallel::map on `pool`, or in the caller as a plain loop when `plain` says so (then `pool`
/// may be null).
template <class F, class Range>
inline auto map_on_threads(scheduler* pool, F& f, Range& items, const options& opts,
                           plain_loop plain = plain_loop::ask) {
  using R = map_result_t<F, Range>;
  if constexpr (std::is_void_v<R>) {
    unit_returning<F&> g{f};
    return map_on_threads(pool, g, items, opts, plain);
  } else if (plain == plain_loop::yes) {
    indexed_input<Range> input(items);
    return threaded_map<F, indexed_input<Range>, R>::plain_loop(f, input, opts.progress);
  } else {
    return map_on_pool(*pool, f, items, opts, plain);
  }
}

}  // namespace parallel::detail
