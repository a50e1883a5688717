// A one-way queue of frames in memory shared by two processes: the caller's tasks to a worker,
// or a worker's results to its caller. One writer, one reader, no system call: the writer copies
// a frame (frame.hpp's header, then the payload) into the ring and publishes it by moving
// `head`; the reader reads it in place, where it lies, and gives the bytes back by moving
// `tail`. The socket stays beside the ring for the handshake, for doorbells (a reader that went
// to sleep is woken there: see doorbell below) and for what does not fit.
//
// Positions only grow (64 bits do not wrap); a position's place in the ring is position % size.
// Records start on 32-byte boundaries and take whole multiples of 32 bytes, so at least a
// header's room is left before the ring's end whenever a record cannot start at its beginning.
// A frame that would not fit before the end is preceded by a `skip` header: the reader goes on
// at the start of the next lap. A writer that finds the ring empty, or that is past the ring's
// warm part (warm_bytes) while the reader has given back the room at its start, starts again at
// its beginning the same way, so the pages in use stay few and warm (first touches are page
// faults, the dearest thing on this path, and cold lines make every write a cache miss), but
// only once at least `restart_room` frames like it would fit before the place it leaves: until
// the reader passes the skip mark, the rest of that lap counts as used. (Starting again whenever
// one frame fit there left room for that frame alone: with tasks of 1 MiB in an 8 MiB ring, the
// next task found the ring full while its worker ran the first, and almost a quarter of a large
// map's bytes went by the socket instead.)
//
// Every header read from the ring is checked like one read from a socket (decode_header), and
// its length against what the writer has published: a peer's bug cannot make the reader read
// outside the ring.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include "../platform.hpp"
#include "frame.hpp"

namespace parallel::detail::ipc {

/// The two positions of a ring, in the shared control block, each on a cache line of its own.
struct ring_cursor {
  alignas(64) std::atomic<std::uint64_t> head{0};  // written by the writer
  alignas(64) std::atomic<std::uint64_t> tail{0};  // written by the reader
};

/// How a ring's reader sleeps without missing a frame, and its writer wakes it only when it
/// sleeps (so a busy pair makes no system call):
///
///     reader                                 writer
///     sleeping()           (seq_cst store)   ring.commit()       (seq_cst store of head)
///     if ring.ready(): awake(), go on        if must_ring(): write a doorbell frame to
///     else block on the socket; awake()                      the reader's socket
///
/// Both sides store, then load what the other stores, all sequentially consistent: at least one
/// of them sees the other's store. So either the reader sees the new frame and does not block,
/// or the writer sees the reader asleep and rings (or both: a spare doorbell, read and ignored
/// the next time the reader blocks).
struct doorbell {
  alignas(64) std::atomic<std::uint32_t> asleep{0};

  void sleeping() noexcept { asleep.store(1, std::memory_order_seq_cst); }
  void awake() noexcept { asleep.store(0, std::memory_order_relaxed); }
  /// The writer, after commit(): true when the reader is (about to be) blocked and must be woken.
  bool must_ring() noexcept {
    return asleep.load(std::memory_order_seq_cst) != 0 &&
           asleep.exchange(0, std::memory_order_acq_rel) != 0;
  }
};

class frame_ring {
 public:
  static constexpr std::uint64_t align = header_size;
  /// A writer that finds the ring empty starts again at its beginning once this many frames of
  /// the size it writes fit before where it is (see the top of this file).
  static constexpr std::uint64_t restart_room = 4;

  frame_ring() = default;
  /// `size` must be a multiple of `align` (0: no ring).
  frame_ring(std::byte* base, std::uint64_t size, ring_cursor* cursor) noexcept
      : base_(base), size_(size), cursor_(cursor) {
    if (cursor_ != nullptr) {
      head_ = cursor_->head.load(std::memory_order_relaxed);
      tail_ = cursor_->tail.load(std::memory_order_relaxed);
    }
  }

  bool usable() const noexcept { return size_ != 0; }
  std::uint64_t size() const noexcept { return size_; }

  static constexpr std::uint64_t record_bytes(std::uint64_t payload) noexcept {
    return (header_size + payload + align - 1) / align * align;
  }
  /// How far into the ring a writer goes while the room at its start is free: a quarter of the
  /// ring, at most 2 MiB. A reader that keeps up then keeps the ring's pages in use few and warm:
  /// a 56 MiB result ring gone round whole is 14,000 first touches on each side, and its lines
  /// are cold in every cache.
  std::uint64_t warm_bytes() const noexcept {
    return std::min<std::uint64_t>(size_ / 4, std::uint64_t{2} << 20) / align * align;
  }

  /// Whether a frame of `payload` bytes can ever travel through this ring (half of it at most,
  /// so that one large frame never stalls the rest for long).
  bool takes(std::uint64_t payload) const noexcept {
    return size_ != 0 && payload <= size_ / 2 && record_bytes(payload) <= size_ / 2;
  }

  // --- writer ----------------------------------------------------------------------------------

  /// Writes a frame's header and returns where its `payload` bytes go, or null when the ring
  /// has no room for it now (or ever: takes()). The frame is the reader's once commit() runs.
  std::byte* reserve(frame_type type, frame_flags flags, std::uint64_t task_id,
                     std::uint64_t payload) noexcept {
    if (!takes(payload)) return nullptr;
    const std::uint64_t need = record_bytes(payload);
    const std::uint64_t tail = cursor_->tail.load(std::memory_order_acquire);
    std::uint64_t at = head_;
    std::uint64_t offset = at % size_;
    const bool empty = at == tail;
    // Past the warm part of the ring, and the reader has given back the room at its start.
    const bool back_to_warm = offset >= warm_bytes() && need * restart_room <= offset &&
                              at + (size_ - offset) + need - tail <= size_;
    if (offset != 0 &&
        ((empty && need * restart_room <= offset) || back_to_warm || offset + need > size_)) {
      // Go on at the next lap's start: when the ring is empty, or the writer is past the warm
      // part of the ring and the reader has freed its start, and frames like this one have room
      // before the skip mark (warm pages); or when the frame would not fit before the end.
      if (at + (size_ - offset) + need - tail > size_) return nullptr;
      put_header(offset, frame_type::skip, frame_flags::none, 0, 0);
      at += size_ - offset;
      offset = 0;
    } else if (at + need - tail > size_) {
      return nullptr;
    }
    if (offset + need > mapped_) map_ahead(offset + need);
    put_header(offset, type, flags, task_id, payload);
    head_ = at + need;
    return base_ + offset + header_size;
  }

  /// Where the next reserve() starts: give it to unreserve() to take back what was reserved
  /// after it and not committed.
  std::uint64_t reserved_end() const noexcept { return head_; }
  /// Takes back every frame reserved since reserved_end() said `end` (none committed since).
  void unreserve(std::uint64_t end) noexcept { head_ = end; }

  /// Copies a whole frame in, its payload `payload` followed by `rest`; false when it does not
  /// fit now.
  bool put(frame_type type, frame_flags flags, std::uint64_t task_id,
           std::span<const std::byte> payload, std::span<const std::byte> rest = {}) noexcept {
    std::byte* at = reserve(type, flags, task_id, payload.size() + rest.size());
    if (at == nullptr) return false;
    if (!payload.empty()) std::memcpy(at, payload.data(), payload.size());
    if (!rest.empty()) std::memcpy(at + payload.size(), rest.data(), rest.size());
    return true;
  }

  /// Publishes every frame reserved so far. Sequentially consistent, so that the writer's next
  /// look at the reader's doorbell word (doorbell) cannot be ordered before it.
  void commit() noexcept { cursor_->head.store(head_, std::memory_order_seq_cst); }
  bool uncommitted() const noexcept {
    return head_ != cursor_->head.load(std::memory_order_relaxed);
  }

  /// How far ahead of itself the writer first maps the ring in (map_ahead).
  static constexpr std::uint64_t map_ahead_first = std::uint64_t{16} << 10;

  // --- reader ----------------------------------------------------------------------------------

  struct record {
    frame_header header;
    std::span<const std::byte> payload;  // in the ring: valid until consume()
    std::uint64_t end = 0;
  };

  /// Whether the writer has published anything not read yet (sequentially consistent: the
  /// reader's look after it announced its sleep, doorbell).
  bool ready() const noexcept {
    return size_ != 0 && cursor_->head.load(std::memory_order_seq_cst) != tail_;
  }

  /// The next frame, checked, or nothing when the ring is empty. Throws a protocol error on a
  /// header or a length that the writer cannot have written.
  std::optional<record> peek(std::uint64_t max_payload) {
    if (size_ == 0) return std::nullopt;
    const std::uint64_t head = cursor_->head.load(std::memory_order_acquire);
    for (;;) {
      if (tail_ == head) return std::nullopt;
      if (head - tail_ > size_ || tail_ % align != 0) {
        wire::protocol_error("a shared ring's positions are inconsistent (head " +
                             std::to_string(head) + ", tail " + std::to_string(tail_) + ")");
      }
      const std::uint64_t offset = tail_ % size_;
      record r;
      r.header = decode_header(std::span<const std::byte, header_size>(base_ + offset, header_size),
                               max_payload);
      if (r.header.type == frame_type::skip) {
        tail_ += size_ - offset;
        cursor_->tail.store(tail_, std::memory_order_release);
        continue;
      }
      const std::uint64_t need = record_bytes(r.header.payload_length);
      if (r.header.payload_length > size_ || need > head - tail_ || offset + need > size_) {
        wire::protocol_error(
            "a frame in a shared ring announces " + std::to_string(r.header.payload_length) +
            " payload bytes, more than " + std::to_string(head - tail_) + " published");
      }
      r.payload = {base_ + offset + header_size, static_cast<std::size_t>(r.header.payload_length)};
      r.end = tail_ + need;
      return r;
    }
  }

  /// The reader is done with `r` (and everything before it): its bytes are the writer's again.
  void consume(const record& r) noexcept {
    tail_ = r.end;
    cursor_->tail.store(tail_, std::memory_order_release);
  }

 private:
  void put_header(std::uint64_t offset, frame_type type, frame_flags flags, std::uint64_t task_id,
                  std::uint64_t payload) noexcept {
    const header_bytes h = encode_header(type, flags, task_id, payload);
    std::memcpy(base_ + offset, h.data(), h.size());
  }

  /// Maps in, in one system call, the ring's pages from where this writer's mapped stretch ends
  /// to `end` and at least as far again (from map_ahead_first): each first touch of a page is
  /// otherwise a fault, the dearest thing on this path (~12 us each on a VM; a fresh worker
  /// writing 200 KB of results took 50 of them). A ring used little is mapped in little.
  void map_ahead(std::uint64_t end) noexcept {
    const std::uint64_t to =
        std::min(size_, std::max(end, mapped_ + std::max(map_ahead_first, mapped_)));
    os::populate_for_write(base_ + mapped_, static_cast<std::size_t>(to - mapped_));
    mapped_ = to;
  }

  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
  ring_cursor* cursor_ = nullptr;
  std::uint64_t head_ = 0;    // writer: the end of what it reserved
  std::uint64_t mapped_ = 0;  // writer: the end of what it mapped in (map_ahead), in this process
  std::uint64_t tail_ = 0;    // reader: the end of what it consumed
};

}  // namespace parallel::detail::ipc
