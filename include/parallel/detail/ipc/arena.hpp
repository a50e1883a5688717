// The memory a worker shares with its caller: one anonymous shared mapping (memfd) per worker,
// made by the caller before the worker starts. Its first page is the control block (what the
// worker is doing now, read by the caller for timeouts and to name the item a dead worker was
// running); the rest is a byte ring through which large results travel instead of the socket.
//
// The ring has one writer (the worker) and one reader (the caller): `head` and `tail` are byte
// positions that only grow; the worker writes [head, head + n) when it fits before the end of
// the ring and in the free space, and sends (position, n) in an arena frame; the caller decodes
// the bytes in place and then advances `tail`. A payload that does not fit goes through the
// socket instead: the worker never waits for ring space, so the ring cannot deadlock anything.
// For the same reason the ring may be smaller than asked, or absent (ring_size() 0), where the
// address space is limited (arena's constructor): the worker learns its size from the caller,
// and a worker that cannot map it maps the control page alone.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <span>

#include "../../errors.hpp"
#include "../process_platform.hpp"
#include "frame.hpp"

namespace parallel::detail::ipc {

struct control_block {
  static constexpr std::uint64_t idle = 0;

  // Written by the worker, read by the caller.
  std::atomic<std::uint64_t> started_seq{0};    // the worker's nth task started last (1-based)
  std::atomic<std::uint64_t> current_index{0};  // the item it runs (or ran last)
  std::atomic<std::uint64_t> started_ns{0};     // when that item started (only with a timeout)
  std::atomic<std::uint64_t> ring_head{0};
  // Written by the caller.
  alignas(64) std::atomic<std::uint64_t> ring_tail{0};

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
  /// Results of at least this many bytes go through the ring (when they fit).
  static constexpr std::size_t ring_threshold = std::size_t{32} << 10;

  /// A smaller ring than this is none: the largest payload it could take (half the ring) would
  /// be barely above ring_threshold.
  static constexpr std::size_t min_ring_bytes = std::size_t{1} << 20;

  arena() = default;
  /// The caller's side. The ring is address space reserved in the caller for each worker: it is
  /// at most 1/64 of a limit on the address space (RLIMIT_AS), and none at all (every result then
  /// travels by the socket) when the mapping is refused. Not a smaller one: a caller that close
  /// to its limit needs what is left for its results and threads more than a worker needs a
  /// ring. Only when not even the control page can be mapped is the worker not started:
  /// spawn_error, naming the limit.
  explicit arena(std::size_t ring_bytes)
      : ring_bytes_(std::min(ring_bytes, ring_limit())),
        fd_(os::anonymous_memory(control_bytes + ring_bytes_)),
        map_(fd_.get(), control_bytes + ring_bytes_, std::nothrow) {
    if (map_.data() == nullptr && ring_bytes_ > 0) {
      ring_bytes_ = 0;
      map_ = os::shared_mapping(fd_.get(), control_bytes, std::nothrow);
    }
    if (map_.data() == nullptr) throw spawn_error(os::address_space_advice());
    new (map_.data()) control_block();
  }

  /// A spawned worker's side: the arena its caller made, received as handle `memory`. A worker
  /// that cannot map the ring (its own address space is limited too) maps the control page only
  /// and sends every result by the socket: try_put never uses a ring of 0.
  struct adopt_t {};
  arena(adopt_t, os::native_handle memory, std::size_t ring_bytes)
      : ring_bytes_(ring_bytes),
        fd_(os::adopt_memory(memory)),
        map_(memory, control_bytes + ring_bytes, std::nothrow) {
    if (map_.data() != nullptr) return;
    ring_bytes_ = 0;
    map_ = os::shared_mapping(memory, control_bytes, std::nothrow);
    if (map_.data() == nullptr) throw spawn_error(os::address_space_advice());
  }

  control_block& control() const noexcept {
    return *std::launder(reinterpret_cast<control_block*>(map_.data()));
  }
  /// What names the memory to a spawned worker (a memfd, a section handle).
  os::native_handle handle() const noexcept { return fd_.get(); }
  std::uint64_t ring_size() const noexcept { return ring_bytes_; }
  /// The caller's side gives up the descriptor once the worker has it (the mapping stays).
  void close_fd() noexcept { fd_.reset(); }

  // --- worker side ------------------------------------------------------------------------

  /// Copies `bytes` into the ring and returns their position, or nothing when they do not fit
  /// now (the caller has not consumed enough yet) or are small enough for the socket.
  std::optional<arena_descriptor> try_put(std::span<const std::byte> bytes) noexcept {
    if (bytes.size() < ring_threshold || bytes.size() > ring_bytes_ / 2) return std::nullopt;
    control_block& c = control();
    std::uint64_t head = c.ring_head.load(std::memory_order_relaxed);
    std::uint64_t tail = c.ring_tail.load(std::memory_order_acquire);
    // The stretch skipped when the ring was last found empty was never written: it is free
    // although the caller's tail has not passed it yet (it passes it with the next release).
    if (tail == skipped_from_) tail = skipped_to_;
    const std::uint64_t offset = head % ring_bytes_;
    if (head == tail) {
      // The caller has consumed everything: start again at the beginning, so the ring's pages
      // in use stay few and warm. The whole ring is free.
      if (offset != 0) {
        skipped_from_ = head;
        head += ring_bytes_ - offset;
        skipped_to_ = head;
      }
    } else {
      // Unconsumed bytes are in [tail, head). Bytes that would not fit before the end go to the
      // start; the skipped end counts as used until the caller passes it.
      if (offset + bytes.size() > ring_bytes_) head += ring_bytes_ - offset;
      if (head + bytes.size() - tail > ring_bytes_) return std::nullopt;
    }
    std::memcpy(ring() + head % ring_bytes_, bytes.data(), bytes.size());
    c.ring_head.store(head + bytes.size(), std::memory_order_release);
    return arena_descriptor{head, bytes.size()};
  }

  // --- caller side ----------------------------------------------------------------------------

  /// The bytes an arena frame points at, checked against what the worker has published.
  std::span<const std::byte> view(const arena_descriptor& where) const {
    const control_block& c = control();
    const std::uint64_t head = c.ring_head.load(std::memory_order_acquire);
    const std::uint64_t tail = c.ring_tail.load(std::memory_order_relaxed);
    const std::uint64_t offset = where.offset % (ring_bytes_ == 0 ? 1 : ring_bytes_);
    if (ring_bytes_ == 0 || where.offset < tail || where.length > head - where.offset ||
        offset + where.length > ring_bytes_) {
      wire::protocol_error("arena frame points at bytes [" + std::to_string(where.offset) + ", +" +
                           std::to_string(where.length) + ") outside the published ring [" +
                           std::to_string(tail) + ", " + std::to_string(head) + ")");
    }
    return {ring() + offset, static_cast<std::size_t>(where.length)};
  }

  /// The caller is done with everything up to the end of `where`.
  void release(const arena_descriptor& where) noexcept {
    control().ring_tail.store(where.offset + where.length, std::memory_order_release);
  }

 private:
  std::byte* ring() const noexcept { return map_.data() + control_bytes; }

  // The largest ring the address-space limit allows a worker, rounded down to whole pages.
  static std::size_t ring_limit() noexcept {
    const std::size_t limit = os::address_space_limit();
    if (limit == 0) return std::numeric_limits<std::size_t>::max();
    const std::size_t share = limit / 64 / control_bytes * control_bytes;
    return share < min_ring_bytes ? 0 : share;
  }

  std::uint64_t ring_bytes_ = 0;
  // Worker side: the last stretch [skipped_from_, skipped_to_) skipped at an empty ring.
  std::uint64_t skipped_from_ = ~std::uint64_t{0};
  std::uint64_t skipped_to_ = 0;
  os::memory_handle fd_;
  os::shared_mapping map_;
};

}  // namespace parallel::detail::ipc
