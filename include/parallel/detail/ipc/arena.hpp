// The memory a worker shares with its caller: one anonymous shared mapping (memfd) per worker,
// made by the caller before the worker starts. Its first page is the control block (what the
// worker is doing now, read by the caller for timeouts and to name the item a dead worker was
// running; the claims on queued tasks; the rings' positions and doorbells); then the pool's
// hooks (hooks.hpp: its initializer and on_exit with their arguments, in whole pages, when it
// has any); then two frame rings (ring.hpp): the caller's tasks to the worker (an eighth of the
// space), and the worker's results to the caller (the rest). Tasks and results travel there, not
// through the socket.
//
// The rings are address space reserved in the caller: under a limit on the address space
// (RLIMIT_AS) they are smaller, or absent (ring_size() 0), and then every frame goes through the
// socket (the arena's constructor). The worker learns their size from the caller; a spawned
// worker that cannot map them does not start (spawn_error naming the limit): both ends must
// agree on the path.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <vector>

#include "../../errors.hpp"
#include "../process_platform.hpp"
#include "frame.hpp"
#include "ring.hpp"

namespace parallel::detail::ipc {

struct control_block {
  static constexpr std::uint64_t idle = 0;

  // Written by the worker, read by the caller.
  std::atomic<std::uint64_t> started_seq{0};    // the worker's nth task started last (1-based)
  std::atomic<std::uint64_t> current_index{0};  // the item it runs (or ran last)
  std::atomic<std::uint64_t> started_ns{0};     // when that item started (only with a timeout)

  // Written by the caller before the worker starts.
  std::uint64_t hooks_size = 0;  // the bytes of the hooks after this page

  ring_cursor tasks;     // caller -> worker
  ring_cursor results;   // worker -> caller
  doorbell worker_bell;  // the worker sleeps on its socket: the caller rings after new tasks
  doorbell caller_bell;  // the caller sleeps: the worker rings after a new result

  // The claim on each task sent and not yet started, by its position in the worker's task
  // stream (seq, 1-based): the caller offers it before sending it, then either the worker takes
  // it as it starts it or the caller withdraws it (to give it to an idle worker, or because its
  // call was left). One compare-and-swap decides which. A word holds seq * 4 + state, so a word
  // left from an earlier task in the same place never matches. The caller keeps fewer than
  // claim_slots tasks in a worker.
  static constexpr std::size_t claim_slots = 256;
  enum : std::uint64_t { queued = 1, started = 2, withdrawn = 3 };
  static constexpr std::uint64_t claim_word(std::uint64_t seq, std::uint64_t state) noexcept {
    return seq * 4 + state;
  }
  std::atomic<std::uint64_t>& claim(std::uint64_t seq) noexcept {
    return claims[seq % claim_slots];
  }
  /// The caller, before it sends task `seq`.
  void offer(std::uint64_t seq) noexcept {
    claim(seq).store(claim_word(seq, queued), std::memory_order_release);
  }
  /// The caller: true when the worker will not run task `seq` (it had not started it).
  bool withdraw(std::uint64_t seq) noexcept {
    std::uint64_t expected = claim_word(seq, queued);
    return claim(seq).compare_exchange_strong(expected, claim_word(seq, withdrawn),
                                              std::memory_order_acq_rel);
  }
  /// The worker, as it starts task `seq`: false when the caller withdrew it. A task never
  /// offered (a caller that does not use claims) is taken.
  bool take(std::uint64_t seq) noexcept {
    std::uint64_t expected = claim_word(seq, queued);
    if (claim(seq).compare_exchange_strong(expected, claim_word(seq, started),
                                           std::memory_order_acq_rel))
      return true;
    return expected != claim_word(seq, withdrawn);
  }

  alignas(64) std::atomic<std::uint64_t> claims[claim_slots]{};
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the control block is shared between processes: its atomics must be lock-free");

class arena {
 public:
  static constexpr std::size_t control_bytes = 4096;
  static_assert(sizeof(control_block) <= control_bytes);

  /// Smaller rings than this are none: the largest frame a ring takes is half of it.
  static constexpr std::size_t min_ring_bytes = std::size_t{1} << 20;

  arena() = default;
  /// The caller's side. The rings are at most 1/64 of a limit on the address space (RLIMIT_AS),
  /// and none at all (every frame then travels by the socket) when the mapping is refused. Not
  /// smaller ones: a caller that close to its limit needs what is left for its results and
  /// threads more than a worker needs a ring. Only when not even the control page can be mapped
  /// is the worker not started: spawn_error, naming the limit.
  /// `hooks` (the pool's, packed by pack_hooks) are copied after the control page.
  explicit arena(std::size_t ring_bytes, std::span<const std::byte> hooks = {})
      : ring_bytes_(usable_ring(std::min(ring_bytes, ring_limit()))),
        hooks_bytes_(whole_pages(hooks.size())),
        fd_(os::anonymous_memory(control_bytes + hooks_bytes_ + ring_bytes_)),
        map_(fd_.get(), control_bytes + hooks_bytes_ + ring_bytes_, std::nothrow) {
    if (map_.data() == nullptr && ring_bytes_ > 0) {
      ring_bytes_ = 0;
      map_ = os::shared_mapping(fd_.get(), control_bytes + hooks_bytes_, std::nothrow);
    }
    if (map_.data() == nullptr) throw spawn_error(os::address_space_advice());
    new (map_.data()) control_block();
    if (!hooks.empty()) {
      std::memcpy(map_.data() + control_bytes, hooks.data(), hooks.size());
      control().hooks_size = hooks.size();
    }
  }

  /// A spawned worker's side: the arena its caller made, received as handle `memory`, with
  /// hooks of `hooks_bytes` and rings of `ring_bytes` (what the caller's hooks_area() and
  /// ring_size() said). Throws spawn_error when it cannot be mapped whole: the caller writes
  /// tasks there.
  struct adopt_t {};
  arena(adopt_t, os::native_handle memory, std::size_t ring_bytes, std::size_t hooks_bytes)
      : ring_bytes_(ring_bytes),
        hooks_bytes_(hooks_bytes),
        fd_(os::adopt_memory(memory)),
        map_(memory, control_bytes + hooks_bytes + ring_bytes, std::nothrow) {
    if (map_.data() == nullptr || usable_ring(ring_bytes) != ring_bytes ||
        whole_pages(hooks_bytes) != hooks_bytes)
      throw spawn_error("parallel: a worker could not map the memory it shares with its caller (" +
                        std::to_string((control_bytes + hooks_bytes + ring_bytes) >> 10) +
                        " KiB); " + os::address_space_advice());
    if (control().hooks_size > hooks_bytes_)
      throw spawn_error("parallel: a worker found hooks of " +
                        std::to_string(control().hooks_size) + " bytes in an area of " +
                        std::to_string(hooks_bytes_));
  }

  control_block& control() const noexcept {
    return *std::launder(reinterpret_cast<control_block*>(map_.data()));
  }
  /// What names the memory to a spawned worker (a memfd, a section handle).
  os::native_handle handle() const noexcept { return fd_.get(); }
  /// Both rings' bytes (0: none; every frame goes through the socket).
  std::uint64_t ring_size() const noexcept { return ring_bytes_; }
  /// The bytes set aside for the hooks (whole pages; 0: none).
  std::uint64_t hooks_area() const noexcept { return hooks_bytes_; }
  /// The pool's hooks, as the caller packed them (empty: none).
  std::span<const std::byte> hooks() const noexcept {
    return {map_.data() + control_bytes, static_cast<std::size_t>(control().hooks_size)};
  }
  /// The caller's side gives up the descriptor once the worker has it (the mapping stays).
  void close_fd() noexcept { fd_.reset(); }

  /// Whether the arena can serve another forked worker (arena_cache): no descriptor (a forked
  /// worker inherits the mapping itself), no hooks, and rings of `ring_bytes` as asked.
  bool reusable_for(std::size_t ring_bytes) const noexcept {
    return !fd_ && hooks_bytes_ == 0 && ring_bytes_ != 0 &&
           ring_bytes_ == usable_ring(std::min(ring_bytes, ring_limit()));
  }

  /// Makes the arena as new for its next worker, whose predecessor has ended: a fresh control
  /// block (positions, doorbells, claims), and each ring's memory past its first `kept` bytes
  /// given back to the system (the pages before stay, mapped in: the next worker's first
  /// frames find them there).
  void renew(std::uint64_t kept) noexcept {
    new (map_.data()) control_block();
    std::byte* const rings = map_.data() + control_bytes + hooks_bytes_;
    if (task_bytes() > kept) os::give_back_shared(rings + kept, task_bytes() - kept);
    const std::uint64_t results = ring_bytes_ - task_bytes();
    if (results > kept) os::give_back_shared(rings + task_bytes() + kept, results - kept);
  }

  /// The ring of tasks (the caller writes, the worker reads) and of results (the other way).
  /// Each side makes its end once, for the worker's life.
  frame_ring task_ring() const noexcept {
    return ring_bytes_ == 0 ? frame_ring()
                            : frame_ring(map_.data() + control_bytes + hooks_bytes_, task_bytes(),
                                         &control().tasks);
  }
  /// Where the result ring's bytes start (tests).
  const std::byte* result_ring_start() const noexcept {
    return map_.data() + control_bytes + hooks_bytes_ + task_bytes();
  }
  frame_ring result_ring() const noexcept {
    return ring_bytes_ == 0 ? frame_ring()
                            : frame_ring(map_.data() + control_bytes + hooks_bytes_ + task_bytes(),
                                         ring_bytes_ - task_bytes(), &control().results);
  }

 private:
  std::uint64_t task_bytes() const noexcept {
    return ring_bytes_ / 8 / frame_ring::align * frame_ring::align;
  }
  static std::size_t whole_pages(std::size_t bytes) noexcept {
    return (bytes + control_bytes - 1) / control_bytes * control_bytes;
  }
  // A size both rings can be cut from, in whole pages; 0 when too small to be worth it.
  static std::size_t usable_ring(std::size_t bytes) noexcept {
    const std::size_t pages = bytes / control_bytes * control_bytes;
    return pages < min_ring_bytes ? 0 : pages;
  }

  // The largest rings the address-space limit allows a worker.
  static std::size_t ring_limit() noexcept {
    const std::size_t limit = os::address_space_limit();
    if (limit == 0) return std::numeric_limits<std::size_t>::max();
    return limit / 64;
  }

  std::uint64_t ring_bytes_ = 0;
  std::uint64_t hooks_bytes_ = 0;
  os::memory_handle fd_;
  os::shared_mapping map_;
};

/// The arenas of per-call fork workers that ended, kept for the next call's workers: making
/// one (memfd, size, mapping, first pages mapped in) and unmapping it (its pages freed) cost
/// ~0.2 ms each on this project's VM, at every call for every worker. At most `capacity`
/// arenas (with the rings' default size, 512 MiB of address space), each holding at most
/// `kept_bytes` of memory in each ring (arena::renew). One cache per
/// process: a forked child that makes engines of its own starts an empty one, and never uses
/// the arenas it inherited (its parent may give them to other workers).
class arena_cache {
 public:
  static constexpr std::size_t capacity = 8;
  static constexpr std::uint64_t kept_bytes = std::uint64_t{1} << 20;

  /// This process's cache.
  static arena_cache& here() {
    static std::atomic<arena_cache*> current{nullptr};
    const os::pid_type me = os::current_pid();
    arena_cache* cache = current.load(std::memory_order_acquire);
    while (cache == nullptr || cache->owner_ != me) {
      // The first one, or the one a forked child inherited: left as it is (leaked in the child,
      // whose parent owns those arenas); its mutex may even have been held at the fork.
      auto* fresh = new arena_cache(me);
      if (current.compare_exchange_strong(cache, fresh, std::memory_order_acq_rel)) return *fresh;
      delete fresh;
    }
    return *cache;
  }

  /// An arena for a new forked worker with rings of `ring_bytes`, or null when none is kept.
  std::unique_ptr<arena> take(std::size_t ring_bytes) {
    const std::lock_guard lock(mutex_);
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
      if (!(*it)->reusable_for(ring_bytes)) continue;
      std::unique_ptr<arena> a = std::move(*it);
      kept_.erase(it);
      return a;
    }
    return nullptr;
  }

  /// Lets every kept arena go (their memory and address space back to the system).
  void clear() noexcept {
    std::vector<std::unique_ptr<arena>> gone;
    const std::lock_guard lock(mutex_);
    gone.swap(kept_);
  }

  std::size_t size() {
    const std::lock_guard lock(mutex_);
    return kept_.size();
  }

  /// Keeps the arena of a worker that ended and was reaped (or lets it go when the cache is
  /// full, or the arena cannot serve a forked worker).
  void give(std::unique_ptr<arena> a) noexcept {
    try {
      if (a == nullptr || a->ring_size() == 0 || size() >= capacity) return;
      a->renew(kept_bytes);
      const std::lock_guard lock(mutex_);
      if (kept_.size() < capacity) kept_.push_back(std::move(a));
    } catch (...) {  // no memory for the list: the arena goes
    }
  }

 private:
  explicit arena_cache(os::pid_type owner) : owner_(owner) {}

  os::pid_type owner_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<arena>> kept_;
};

}  // namespace parallel::detail::ipc
