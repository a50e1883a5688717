// map and imap over worker processes, for both ways of running them: workers forked for one call
// (processes<start::fork>, in fork_verbs.hpp: the input and f are read in place, copy-on-write;
// only indices go out), and a pool's workers (process_pool: each job ships the function, its
// closure and the items). The calls talk to their engine through a runner: the caller's own thread
// drives a per-call engine, a pool's I/O thread drives the pool's.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
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
#include <vector>

#include "../../codec.hpp"
#include "../../errors.hpp"
#include "../../policy.hpp"
#include "../ipc/engine.hpp"
#include "../ipc/task.hpp"
#include "../process_platform.hpp"
#include "../scheduler/default_pools.hpp"
#include "../scheduler/parker.hpp"
#include "backends.hpp"
#include "common.hpp"
#include "sequential.hpp"

namespace parallel::detail {

/// A spawned child (a worker, or the forkserver) whose main() never reached
/// parallel::spawn_main and now tries to start workers itself (Python's "bootstrapping phase"
/// error) says so on stderr and ends here: an exception could be caught by main(), which would
/// then go on running the program once more in every worker. Its parent gets spawn_error,
/// naming spawn_main, when the child ends before its handshake.
inline void refuse_in_spawned_child() {
  if (os::worker_marker_value() != nullptr) {
    std::fputs(
        "parallel: this process was spawned as a worker, but main() did not call "
        "parallel::spawn_main(argc, argv) first, and now tries to start workers itself; it ends "
        "here, and its parent gets parallel::spawn_error. Make parallel::spawn_main(argc, argv) "
        "the first statement of main (the twin of Python's `if __name__ == '__main__':` guard)\n",
        stderr);
    std::fflush(nullptr);
    os::exit_now(70);
  }
}

/// How a submitted task's future takes its job back from a pool (future::cancel): `take(owner,
/// sink, kill)` says whether the job was taken back before it started, or killed as it ran
/// (kill: a process pool kills the worker), or neither.
struct withdrawal {
  cancel_outcome (*take)(void* owner, ipc::job_sink* sink, bool kill) = nullptr;
  void* owner = nullptr;
};

/// How a thread that waits for a submitted task's future may help it along before it sleeps:
/// on a process pool it drives the pool's engine while jobs are short
/// (process_pool_core::drive). `help(gate.get(), done, within_ns)` returns when `done` is set,
/// helping is not worth it, or `within_ns` from now (0: no limit); `gate` keeps what it uses
/// alive (a future may outlive its pool).
struct future_helper {
  bool (*help)(void* gate, const latch& done, std::uint64_t within_ns) = nullptr;
  std::shared_ptr<void> gate;
};

/// How a call reaches its engine.
class runner {
 public:
  /// Hands over every job of `batch` (which is left empty): one wake-up of the engine for all.
  virtual void post(std::vector<std::unique_ptr<ipc::job>>& batch) = 0;
  /// Drops the sink's queued jobs and forgets those in flight; on return the engine will not
  /// call the sink again.
  virtual void cancel(ipc::job_sink* sink) = 0;
  /// Called with `lock` held on the call's mutex: returns after the call's state may have
  /// changed (the engine ran, or the pool's thread notified `changed`).
  virtual void wait(std::unique_lock<std::mutex>& lock, std::condition_variable& changed) = 0;
  virtual std::size_t workers() const = 0;
  /// An empty buffer for a job's payload: one a finished job left (no fresh memory to fault
  /// in), or a new one.
  virtual std::vector<std::byte> buffer() { return {}; }
  /// Whether a job may borrow its items from the call's memory (ipc::job::borrowed): an
  /// ipc::engine copies them straight into the frame it sends.
  virtual bool lends() const { return false; }
  /// For the futures of submit: how to take a job back later (none: it cannot be).
  virtual withdrawal withdrawer() { return {}; }
  /// For the futures of submit: how a thread that waits for one may help (none: it sleeps).
  virtual future_helper helper() { return {}; }

 protected:
  ~runner() = default;
};

/// A per-call engine, driven by the calling thread itself.
class inline_runner final : public runner {
 public:
  explicit inline_runner(ipc::engine& e) : engine_(e) {}
  void post(std::vector<std::unique_ptr<ipc::job>>& batch) override {
    for (auto& j : batch) engine_.post(std::move(j));
    batch.clear();
  }
  void cancel(ipc::job_sink* sink) override { engine_.cancel(sink); }
  bool lends() const override { return true; }
  void wait(std::unique_lock<std::mutex>& lock, std::condition_variable&) override {
    lock.unlock();
    try {
      engine_.pump(-1);
    } catch (...) {
      lock.lock();
      throw;
    }
    lock.lock();
  }
  std::size_t workers() const override { return engine_.size(); }

 private:
  ipc::engine& engine_;
};

/// What automatic batching learned of a function's items, kept for its next call: that call
/// sizes its first chunks from it instead of probing again with one-item jobs. One per function
/// type and item type, shared by every pool, process backend and MPI, and taken as known only for
/// the function it measured (`of`: another capture of the same lambda, or another target of a
/// function pointer, is another function). Each word is atomic on its own: a call that reads
/// while another writes may mix two functions' figures, which only sizes its first chunks.
struct learned_cost {
  std::atomic<std::uint64_t> of{0};           // callable_identity of the function measured
  std::atomic<std::uint64_t> ns_per_item{0};  // 0: never measured
  std::atomic<std::uint64_t> bytes_per_item{0};
  std::atomic<std::uint64_t> input_bytes_per_item{0};  // of the items, as a job carries them
};
template <class F, class V>
inline learned_cost learned_cost_of;

/// A function's learned cost: where it is kept (null: nowhere) and which function it is for.
struct cost_memory {
  learned_cost* where = nullptr;
  std::uint64_t of = 0;  // callable_identity
};

/// Where a call of f over items V keeps its learned cost: nowhere for a std::function, which can
/// hold any function (a cheap one must not size the chunks of a slow one).
template <class V, class F>
cost_memory learned_cost_for(const F& f) noexcept {
  const std::uint64_t identity = callable_identity(f);
  if (identity == 0) return {};
  return {&learned_cost_of<std::remove_cvref_t<F>, V>, identity};
}

/// Automatic batching shared by map and imap: chunks that take ~2 ms in a worker, shrinking
/// towards the end so the last ones spread out, but never below min_tail_ns of work or 1/8 of a
/// worker's share of the call (a tail of one-item jobs costs a round trip each). A function run
/// before starts from what was learned then; a new one from a few probe jobs of growing size.
class chunk_planner {
 public:
  /// `split`: with nothing measured, cut the call into a few chunks per worker at once rather
  /// than probing with one-item jobs (per-call fork, whose workers read the items in place: a
  /// chunk costs nothing to send however large).
  chunk_planner(std::size_t fixed, std::size_t workers, std::size_t total = unknown,
                cost_memory memory = {}, bool split = false)
      : fixed_(fixed),
        workers_(workers),
        total_(total),
        memory_(memory.where),
        of_(memory.of),
        split_(split) {
    if (memory_ == nullptr || fixed_ != 0) return;
    if (memory_->of.load(std::memory_order_relaxed) != of_) return;  // another function's
    const std::uint64_t ns = memory_->ns_per_item.load(std::memory_order_relaxed);
    if (ns == 0) return;
    items_ = 1;  // weighs one item: the call's own measurements take over at once
    ns_ = ns;
    bytes_ = memory_->bytes_per_item.load(std::memory_order_relaxed);
    // And the items' size, so that the first chunk too fits its worker's ring.
    if (const std::uint64_t in = memory_->input_bytes_per_item.load(std::memory_order_relaxed);
        in != 0) {
      input_items_ = 1;
      input_bytes_ = in;
    }
  }
  chunk_planner(const chunk_planner&) = delete;
  chunk_planner& operator=(const chunk_planner&) = delete;
  ~chunk_planner() {
    if (memory_ == nullptr || measured_ == 0) return;
    memory_->ns_per_item.store(std::max<std::uint64_t>(1, ns_ / items_), std::memory_order_relaxed);
    memory_->bytes_per_item.store(bytes_ / items_, std::memory_order_relaxed);
    if (input_items_ != 0)
      memory_->input_bytes_per_item.store(std::max<std::uint64_t>(1, input_bytes_ / input_items_),
                                          std::memory_order_relaxed);
    memory_->of.store(of_, std::memory_order_relaxed);
  }

  std::size_t next(std::size_t remaining) {
    if (fixed_ != 0) return fixed_;
    std::size_t size;
    if (items_ == 0 && split_ && total_ != unknown &&
        total_ >= split_per_worker * workers_ * min_split_chunk) {
      // Nothing measured yet, many items in place: a few chunks per worker (an idle worker
      // takes back those still queued in a busy one, so an uneven split evens out). Fewer items
      // are probed one by one: then one slow item holds no other.
      size = (total_ + split_per_worker * workers_ - 1) / (split_per_worker * workers_);
    } else if (items_ == 0) {
      // Nothing measured yet: one item per job for the first round, then slowly larger.
      size = std::size_t{1} << std::min<std::size_t>(probes_++ / (2 * workers_), 4);
    } else {
      const std::uint64_t per_item = std::max<std::uint64_t>(1, ns_ / items_);
      size = static_cast<std::size_t>(target_ns / per_item);
      // Results of a chunk travel together: keep a chunk's results to a few MiB.
      const std::uint64_t bytes_per_item = std::max<std::uint64_t>(1, bytes_ / items_);
      size =
          std::min<std::size_t>(size, static_cast<std::size_t>(max_chunk_bytes / bytes_per_item));
      // And its items: a task that fits its worker's ring beside the next ones is copied once.
      if (input_bytes_ != 0)
        size = std::min<std::size_t>(
            size, static_cast<std::size_t>(max_chunk_input_bytes * input_items_ / input_bytes_));
      if (remaining != unknown) {
        // Shrink towards the end, down to a floor: min_tail_ns of work, or an eighth of a
        // worker's share of the whole call, whichever is more.
        std::size_t floor = static_cast<std::size_t>(min_tail_ns / per_item);
        if (total_ != unknown) floor = std::max(floor, total_ / (8 * workers_));
        size = std::min(size, std::max(floor, remaining / (4 * workers_)));
        // Never more than a worker's share of the call: every worker gets a chunk, whatever a
        // cost learned in an earlier call says. (A share of what is *left* would halve with
        // each chunk at the end, down to one item: a tail of ever smaller jobs.)
        if (total_ != unknown) size = std::min(size, (total_ + workers_ - 1) / workers_);
      }
    }
    return std::clamp<std::size_t>(size, 1, max_chunk);
  }

  /// What a job of `count` items should take in its worker, as measured so far (0: unknown).
  std::uint64_t estimate_ns(std::size_t count) const noexcept {
    return items_ == 0 ? 0 : std::max<std::uint64_t>(1, ns_ / items_ * count);
  }

  /// A job's items took `bytes` of its payload.
  void note_input(std::uint64_t items, std::uint64_t bytes) noexcept {
    input_items_ += items;
    input_bytes_ += bytes;
  }

  void learn(std::uint64_t items, std::uint64_t ns, std::uint64_t bytes) noexcept {
    items_ += items;
    ns_ += ns;
    bytes_ += bytes;
    measured_ += items;
  }

  /// Jobs to keep posted: about two milliseconds of work per worker, at least two jobs each.
  std::size_t jobs_ahead(std::size_t chunk) const noexcept {
    std::size_t per_worker = 2;
    if (items_ != 0) {
      const std::uint64_t job_ns = std::max<std::uint64_t>(1, ns_ / items_ * chunk);
      per_worker = std::clamp<std::size_t>(static_cast<std::size_t>(2'000'000 / job_ns) + 2, 3, 64);
    }
    return per_worker * workers_;
  }

  static constexpr std::size_t unknown = std::numeric_limits<std::size_t>::max();

 private:
  static constexpr std::uint64_t target_ns = 2'000'000;
  static constexpr std::uint64_t min_tail_ns = 50'000;
  static constexpr std::size_t split_per_worker = 4;
  static constexpr std::size_t min_split_chunk = 16;
  static constexpr std::size_t max_chunk = std::size_t{1} << 20;
  static constexpr std::uint64_t max_chunk_bytes = std::uint64_t{4} << 20;
  static constexpr std::uint64_t max_chunk_input_bytes = std::uint64_t{1} << 20;
  std::size_t fixed_;
  std::size_t workers_;
  std::size_t total_;
  learned_cost* memory_;
  std::uint64_t of_;  // the function whose cost memory_ keeps
  bool split_;
  std::size_t probes_ = 0;
  std::uint64_t items_ = 0;
  std::uint64_t ns_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t measured_ = 0;  // items measured by this call (not the seed)
  std::uint64_t input_items_ = 0;
  std::uint64_t input_bytes_ = 0;
};

/// Writes a job's body: nothing more (fork-per-call, index mode), or the items (and, on a pool,
/// the trampoline and the function first).
using body_prefix = std::vector<std::byte>;

inline std::unique_ptr<ipc::job> make_job(std::uint64_t first, std::uint64_t count,
                                          const options& opts, const body_prefix& prefix,
                                          std::vector<std::byte> buffer = {}) {
  auto j = std::make_unique<ipc::job>();
  j->payload = std::move(buffer);
  j->first = first;
  j->count = count;
  j->timeout = opts.timeout;
  encoder out(j->payload);
  ipc::write_task_header(out, first, count, opts.timeout.count() > 0 ? ipc::task_timed : 0);
  out.write_bytes(prefix.data(), prefix.size());
  return j;
}

// --- map ----------------------------------------------------------------------------------------

template <class R>
class process_map_call final : public ipc::job_sink {
 public:
  process_map_call(runner& run, std::size_t n, const options& opts, cost_memory memory = {},
                   bool split = false)
      : run_(run), n_(n), opts_(opts), planner_(opts.chunksize, run.workers(), n, memory, split) {}

  /// Posts jobs as results come back; `fill(job&, encoder&, first, count)` writes a job's
  /// items (or lends them: runner::lends).
  template <class Fill>
  std::vector<R> run(const body_prefix& prefix, Fill&& fill) {
    std::unique_lock lock(mutex_);
    std::size_t reported = 0;
    try {
      while (!error_ && (next_ < n_ || outstanding_ > 0)) {
        std::size_t chunk = planner_.next(n_ - next_);
        batch_.clear();
        while (next_ < n_ && outstanding_ < planner_.jobs_ahead(chunk)) {
          const std::size_t count = std::min(chunk, n_ - next_);
          // A job whose items are lent needs only a small payload: no large spare buffer for it.
          auto j = make_job(next_, count, opts_, prefix,
                            lent_ ? std::vector<std::byte>{} : run_.buffer());
          j->sink = this;
          const std::size_t before = j->payload.size();
          encoder body(j->payload);
          fill(*j, body, next_, count);
          lent_ = !j->borrowed.empty();
          j->estimated_ns = planner_.estimate_ns(count);
          planner_.note_input(count, j->payload.size() - before + j->borrowed.size());
          next_ += count;
          ++outstanding_;
          batch_.push_back(std::move(j));
          chunk = planner_.next(n_ - next_);
        }
        if (!batch_.empty()) run_.post(batch_);
        // The result vector is made once the first jobs are out (zeroing it takes a while: the
        // workers start meanwhile), before the lock is let go: results() waits for it.
        if (!slots_) slots_.emplace(n_);
        // Woken when the jobs in flight run low, at the end, or at a failure (not per job:
        // at chunksize 1 that would be two context switches per task).
        wake_below_ = next_ < n_ ? planner_.jobs_ahead(chunk) / 2 : 0;
        if (outstanding_ > wake_below_) run_.wait(lock, changed_);
        if (opts_.progress && done_ != reported && !error_) {
          reported = done_;
          lock.unlock();
          opts_.progress(reported, n_);
          lock.lock();
        }
      }
    } catch (...) {  // a progress callback, or posting, threw
      if (lock.owns_lock()) lock.unlock();
      run_.cancel(this);
      throw;
    }
    if (error_) {
      lock.unlock();
      run_.cancel(this);
      std::rethrow_exception(error_);
    }
    lock.unlock();
    if (opts_.progress && (reported != n_ || n_ == 0)) opts_.progress(n_, n_);
    if (!slots_) slots_.emplace(n_);
    return slots_->take();
  }

  /// Makes the result vector now, not once the first jobs are out; where it is.
  std::span<std::byte> make_results() {
    if (!slots_) slots_.emplace(n_);
    return slots_->memory();
  }

  void results(ipc::job& j, decoder& in, std::uint64_t k, std::uint64_t ns) override {
    // The caller makes the slots before it first lets go of the lock, so once this thread has
    // had it they exist (unless making them, or the first post, threw: the call is failing and
    // drops its results). Not held while decoding: a large result takes a while to decode, and
    // the caller needs the lock to post the next jobs.
    {
      const std::lock_guard lock(mutex_);
      if (!slots_) return;
    }
    const std::size_t bytes = in.remaining();
    if constexpr (crosses_as_bytes<R>) {
      // Results that are their bytes: one copy of the block into the result vector.
      if (k > bytes / sizeof(R))
        protocol_error("a result of " + std::to_string(k) + " values carries " +
                       std::to_string(bytes) + " bytes of them");
      const std::byte* block =
          in.read_span(static_cast<std::size_t>(k) * sizeof(R), type_name<R>()).data();
      slots_->put_block(static_cast<std::size_t>(j.first), static_cast<std::size_t>(k), block);
    } else {
      for (std::uint64_t i = 0; i < k; ++i)
        slots_->put(static_cast<std::size_t>(j.first + i), in.read<R>());
    }
    std::lock_guard lock(mutex_);
    done_ += static_cast<std::size_t>(k);
    if (k > 0) planner_.learn(k, ns, bytes);
  }
  void failed(ipc::job&, std::exception_ptr error) override {
    std::lock_guard lock(mutex_);
    if (!error_) error_ = std::move(error);
  }
  void done(ipc::job&) override {
    // Notified under the lock: once the caller sees the count drop it may return and destroy
    // the condition variable.
    std::lock_guard lock(mutex_);
    --outstanding_;
    if (outstanding_ <= wake_below_ || error_ || opts_.progress) changed_.notify_one();
  }

 private:
  runner& run_;
  std::size_t n_;
  const options& opts_;
  std::optional<result_slots<R>> slots_;  // made after the first post (run)
  chunk_planner planner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t next_ = 0;
  std::vector<std::unique_ptr<ipc::job>> batch_;
  std::size_t outstanding_ = 0;
  bool lent_ = false;           // the last job borrowed its items (runner::lends)
  std::size_t wake_below_ = 0;  // the caller wants to hear when outstanding_ drops to this
  std::size_t done_ = 0;
  std::exception_ptr error_;
};

// --- imap ---------------------------------------------------------------------------------------

/// Where a filler stands in the input while it fills one job: the items it took into the job,
/// whether the iterator still points at the last item taken (the input moves on only when the
/// next item is wanted, so a generator runs no further ahead than max_in_flight allows), and
/// whether it reached the input's end.
struct input_cursor {
  std::size_t count = 0;
  bool taken = false;
  bool at_end = false;
};

/// imap / imap_unordered over processes: a window of jobs in input order, refilled as the
/// consumer takes results; at most max_in_flight items read ahead (automatic: bounded).
template <class R, class View, bool Ordered>
class process_imap_state final : public ipc::job_sink {
 public:
  using value_type = R;
  /// Writes job items [first, first + count) taken from the input; `in_place` says whether the
  /// worker reads them itself (fork-per-call over a random-access range).
  /// Takes items from the input until the job holds `want` or the input ends, into the job's
  /// body (or just past them, when the workers read the input in place), in one pass. An
  /// exception from the input leaves the cursor on the items taken before it.
  using filler =
      std::function<void(encoder&, std::ranges::iterator_t<View>&,
                         const std::ranges::sentinel_t<View>&, std::size_t, input_cursor&)>;

  process_imap_state(runner& run, View items, const options& opts, body_prefix prefix, filler fill,
                     std::unique_ptr<void, void (*)(void*)> keep_alive, cost_memory memory = {})
      : keep_alive_(std::move(keep_alive)),
        run_(run),
        items_(std::move(items)),
        opts_(opts),
        prefix_(std::move(prefix)),
        fill_(std::move(fill)),
        planner_(opts.chunksize, run.workers(), total_of(items_), memory),
        next_(std::ranges::begin(items_)) {
    if constexpr (std::ranges::sized_range<View>)
      total_ = static_cast<std::size_t>(std::ranges::size(items_));
  }
  process_imap_state(const process_imap_state&) = delete;
  process_imap_state& operator=(const process_imap_state&) = delete;
  ~process_imap_state() { run_.cancel(this); }

  bool advance() {
    std::unique_lock lock(mutex_);
    if (current_ && ++position_ < current_->results.size()) return report(lock);
    if (current_) {
      auto error = current_->error;
      in_flight_ -= current_->count;
      current_.reset();
      if (error) {
        finished_ = true;
        std::rethrow_exception(error);
      }
    }
    while (!finished_) {
      refill();
      if (window_.empty()) {
        finished_ = true;
        // The input failed: every item read before it was delivered first (Python's Pool).
        if (input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
        if (opts_.progress && (delivered_ == 0 || total_ != delivered_)) {
          lock.unlock();
          opts_.progress(delivered_, delivered_);
        }
        return false;
      }
      current_ = take_next(lock);
      position_ = 0;
      if (!current_->results.empty()) return report(lock);
      if (current_->error) return advance_locked_error(lock);
      in_flight_ -= current_->count;
      current_.reset();
    }
    return false;
  }

  value_type& current() { return current_->results[position_].value; }

  void results(ipc::job& j, decoder& in, std::uint64_t k, std::uint64_t ns) override {
    auto* c = reinterpret_cast<chunk*>(j.tag);
    const std::size_t bytes = in.remaining();
    c->results.reserve(static_cast<std::size_t>(k));
    for (std::uint64_t i = 0; i < k; ++i) c->results.push_back(boxed{in.read<R>()});
    std::lock_guard lock(mutex_);
    if (k > 0) planner_.learn(k, ns, bytes);
  }
  void failed(ipc::job& j, std::exception_ptr error) override {
    auto* c = reinterpret_cast<chunk*>(j.tag);
    c->error = std::move(error);
  }
  void done(ipc::job& j) override {
    auto* c = reinterpret_cast<chunk*>(j.tag);
    std::lock_guard lock(mutex_);  // notified under the lock, as in process_map_call
    c->done = true;
    if constexpr (!Ordered) completed_.push_back(c);
    changed_.notify_one();
  }

 private:
  // A result in a box of its own: std::vector<bool> could not hand out a bool&.
  struct boxed {
    R value;
  };

  struct chunk {
    std::size_t first = 0;
    std::size_t count = 0;
    std::vector<boxed> results;
    std::exception_ptr error;
    bool done = false;
  };

  bool advance_locked_error(std::unique_lock<std::mutex>&) {
    auto error = current_->error;
    current_.reset();
    finished_ = true;
    std::rethrow_exception(error);
  }

  bool report(std::unique_lock<std::mutex>& lock) {
    ++delivered_;
    if (opts_.progress) {
      lock.unlock();
      opts_.progress(delivered_, total_);
    }
    return true;
  }

  std::size_t window_limit(std::size_t chunk_items) const noexcept {
    if (opts_.max_in_flight != 0) return opts_.max_in_flight;
    return std::clamp<std::size_t>(planner_.jobs_ahead(chunk_items) * chunk_items, 16,
                                   std::size_t{1} << 16);
  }

  void refill() {
    take_input();
    if (!batch_.empty()) run_.post(batch_);
  }

  void take_input() {
    while (!input_done_ && !failed_seen()) {
      std::size_t size = planner_.next(total_ == 0 ? chunk_planner::unknown : total_ - read_);
      const std::size_t limit = window_limit(size);
      if (opts_.max_in_flight != 0)
        size = std::min(size, std::max<std::size_t>(1, opts_.max_in_flight / (2 * run_.workers())));
      const std::size_t room = limit > in_flight_ ? limit - in_flight_ : 0;
      if (room == 0 || (room < size && !window_.empty())) return;
      const std::size_t want = std::min(size, room);
      auto c = std::make_unique<chunk>();
      c->first = read_;
      auto j = make_job(read_, 0, opts_, prefix_, run_.buffer());
      const std::size_t before = j->payload.size();
      encoder body(j->payload);
      const auto end = std::ranges::end(items_);
      // One pass over the input (it may be single-pass); the count is patched in afterwards.
      input_cursor at{.count = 0, .taken = taken_, .at_end = false};
      try {
        fill_(body, next_, end, want, at);
      } catch (...) {
        // The input itself threw (its * or ++, or an item's encoding): the items it gave before
        // still run and are delivered; then the caller gets this exception.
        input_error_ = std::current_exception();
        at.at_end = true;
      }
      taken_ = at.taken;
      if (at.at_end) input_done_ = true;
      const std::size_t count = at.count;
      if (count == 0) return;
      planner_.note_input(count, j->payload.size() - before);
      // Patch the header's count (written as 0 above).
      const std::uint64_t wide = count;
      std::memcpy(j->payload.data() + 8, &wide, sizeof wide);
      j->count = count;
      j->estimated_ns = planner_.estimate_ns(count);
      j->sink = this;
      j->tag = reinterpret_cast<std::uint64_t>(c.get());
      c->count = count;
      read_ += count;
      in_flight_ += count;
      window_.push_back(std::move(c));
      batch_.push_back(std::move(j));
    }
  }

  static std::size_t total_of(View& items) {
    if constexpr (std::ranges::sized_range<View>)
      return static_cast<std::size_t>(std::ranges::size(items));
    else
      return chunk_planner::unknown;
  }

  bool failed_seen() const noexcept {
    for (const auto& c : window_)
      if (c->done && c->error) return true;
    return false;
  }

  std::unique_ptr<chunk> take_next(std::unique_lock<std::mutex>& lock) {
    auto it = window_.begin();
    if constexpr (Ordered) {
      while (!(*it)->done) run_.wait(lock, changed_);
    } else {
      while (completed_.empty()) run_.wait(lock, changed_);
      chunk* ready = completed_.front();
      completed_.pop_front();
      it = std::find_if(window_.begin(), window_.end(),
                        [ready](auto& c) { return c.get() == ready; });
    }
    auto taken = std::move(*it);
    window_.erase(it);
    return taken;
  }

  std::unique_ptr<void, void (*)(void*)> keep_alive_;  // a per-call engine, destroyed last
 public:
  /// Where a fork-per-call worker reads random-access input in place.
  auto origin() { return std::ranges::begin(items_); }

 private:
  runner& run_;
  View items_;
  const options opts_;
  body_prefix prefix_;
  filler fill_;
  chunk_planner planner_;
  std::ranges::iterator_t<View> next_;
  bool taken_ = false;              // *next_ is in a job: move past it before the next item
  std::exception_ptr input_error_;  // thrown by the input, delivered after its items' results
  std::size_t total_ = 0;           // 0 when unknown
  std::size_t read_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t delivered_ = 0;
  bool input_done_ = false;
  bool finished_ = false;
  std::deque<std::unique_ptr<chunk>> window_;
  std::vector<std::unique_ptr<ipc::job>> batch_;
  std::unique_ptr<chunk> current_;
  std::size_t position_ = 0;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<chunk*> completed_;
};

/// The filler of shipped items: each item encoded into the job's body.
template <class View, class V>
void ship_items(encoder& body, std::ranges::iterator_t<View>& it,
                const std::ranges::sentinel_t<View>& end, std::size_t want, input_cursor& at) {
  while (at.count < want) {
    if (at.taken) {
      at.taken = false;
      ++it;
    }
    if (it == end) {
      at.at_end = true;
      return;
    }
    const std::size_t mark = body.buffer().size();
    try {
      const V& item = *it;
      body.write(item);
    } catch (...) {
      body.buffer().resize(mark);  // no half-written item in the job
      throw;
    }
    at.taken = true;
    ++at.count;
  }
}

}  // namespace parallel::detail
