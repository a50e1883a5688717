// What a task is on both sides of the channel: its header (the items it covers, its flags), the
// result payload a worker builds for it (chunk_output), and how a pool ships a function to run
// (encode_callable on the caller's side; run_shipped, run_items and run_call on the worker's).
// Payload layouts are in worker.hpp's opening comment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../../codec.hpp"
#include "../no_result.hpp"
#include "../process_platform.hpp"
#include "arena.hpp"
#include "identity.hpp"

namespace parallel::detail::ipc {

inline constexpr std::uint32_t task_timed = 1u << 0;  // record when each item starts

/// Task frames may be large (a pool ships arguments); the reader still never allocates ahead of
/// the bytes that arrived.
inline constexpr std::size_t max_task_payload = std::size_t{1} << 40;

/// The demangled name of the exception being handled ("std::out_of_range").
inline std::string current_exception_type_name() { return os::current_exception_type_name(); }

using os::current_exception_message;

/// Builds one result payload: the results of a chunk's items, in order, up to the first that
/// throws.
class chunk_output {
 public:
  /// `ring`: where results that are their bytes may be written in place, as the frame of task
  /// `task_id` (null: always into `buffer`).
  chunk_output(std::vector<std::byte>& buffer, control_block& control, frame_ring* ring = nullptr,
               std::uint64_t task_id = 0)
      : buffer_(buffer), out_(buffer), control_(control), ring_(ring), task_id_(task_id) {
    started_ = os::monotonic_ns();
    buffer_.resize(head_size);
  }

  /// Runs produce(i) for i in [first, first + count) and encodes each result; stops at the
  /// first exception (thrown by produce or by the result's codec) and records it.
  template <class Produce>
  void run(std::uint64_t first, std::uint64_t count, bool timed, Produce&& produce) {
    using R = std::remove_cvref_t<std::invoke_result_t<Produce&, std::uint64_t>>;
    if constexpr (crosses_as_bytes<R>) {
      // Results that are their bytes: the block is sized once and each result copied in, in
      // the result ring itself when the whole frame fits there now (no copy, no zero-fill).
      const std::size_t block = static_cast<std::size_t>(count) * sizeof(R);
      std::byte* at = nullptr;
      if (ring_ != nullptr && buffer_.size() == head_size && !failed_) {
        ring_mark_ = ring_->reserved_end();
        at = ring_->reserve(frame_type::result, frame_flags::none, task_id_, head_size + block + 1);
        if (at != nullptr) {
          in_ring_ = at;
          result_size_ = sizeof(R);
          at += head_size;
        }
      }
      const std::size_t mark = buffer_.size();
      if (at == nullptr) {
        buffer_.resize(mark + block);
        at = buffer_.data() + mark;
      }
      for (std::uint64_t k = 0; k < count; ++k) {
        const std::uint64_t index = first + k;
        control_.current_index.store(index, std::memory_order_relaxed);
        if (timed) control_.started_ns.store(os::monotonic_ns(), std::memory_order_release);
        try {
          const R value = produce(index);
          std::memcpy(at + k * sizeof(R), &value, sizeof(R));
          ++produced_;
        } catch (...) {
          if (in_ring_ == nullptr) buffer_.resize(mark + static_cast<std::size_t>(k) * sizeof(R));
          fail_current(index);  // what was produced in the ring moves to the buffer
          return;
        }
      }
      return;
    }
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::uint64_t index = first + k;
      control_.current_index.store(index, std::memory_order_relaxed);
      if (timed) control_.started_ns.store(os::monotonic_ns(), std::memory_order_release);
      const std::size_t mark = buffer_.size();
      try {
        out_.write(produce(index));
        ++produced_;
      } catch (...) {
        buffer_.resize(mark);  // a half-written result goes
        fail_current(index);
        return;
      }
    }
  }

  /// Inside a catch block: the task failed at item `index`.
  void fail_current(std::uint64_t index) {
    if (failed_) return;
    if (in_ring_ != nullptr) {
      // A failure's frame has another length: the results produced move to the buffer.
      const std::byte* results = in_ring_ + head_size;
      buffer_.insert(buffer_.end(), results, results + produced_ * result_size_);
      leave_ring();
    }
    failed_ = true;
    patch();
    out_.write(std::uint8_t{1});
    out_.write(index);
    out_.write(current_exception_type_name());
    out_.write(current_exception_message());
  }

  /// Completes the payload (the worker loop calls it after the task).
  void close() {
    if (failed_) return;
    patch();
    if (in_ring_ != nullptr) {
      const std::uint8_t finished = 0;
      std::memcpy(in_ring_ + head_size + produced_ * result_size_, &finished, 1);
      return;
    }
    out_.write(std::uint8_t{0});
  }

  /// Whether the result frame was written in the ring (reserved, not committed yet) rather than
  /// into the buffer: then the worker only commits it.
  bool in_ring() const noexcept { return in_ring_ != nullptr; }

 private:
  /// A result payload begins with the chunk's nanoseconds and result count (uint64 each),
  /// patched in at the end.
  static constexpr std::size_t head_size = 16;

  void patch() {
    const std::uint64_t took = os::monotonic_ns() - started_;
    std::byte* to = in_ring_ != nullptr ? in_ring_ : buffer_.data();
    std::memcpy(to, &took, 8);
    std::memcpy(to + 8, &produced_, 8);
  }

  // Gives the frame reserved in the ring back (the results go by the buffer after all).
  void leave_ring() noexcept {
    ring_->unreserve(ring_mark_);
    in_ring_ = nullptr;
  }

  std::vector<std::byte>& buffer_;
  encoder out_;
  control_block& control_;
  std::uint64_t started_ = 0;
  std::uint64_t produced_ = 0;
  bool failed_ = false;
  frame_ring* ring_;
  std::uint64_t task_id_;
  std::byte* in_ring_ = nullptr;  // the reserved frame's payload, when results go there
  std::uint64_t ring_mark_ = 0;   // the ring's reserved end before it
  std::size_t result_size_ = 0;   // bytes of one result in the ring
};

/// What a worker does with one task: read the body, fill the output.
struct task_header {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
  std::uint32_t flags = 0;
};

inline task_header read_task_header(decoder& in) {
  task_header h;
  h.first = in.read<std::uint64_t>();
  h.count = in.read<std::uint64_t>();
  h.flags = in.read<std::uint32_t>();
  return h;
}

inline void write_task_header(encoder& out, std::uint64_t first, std::uint64_t count,
                              std::uint32_t flags) {
  out.write(first);
  out.write(count);
  out.write(flags);
}

// --- functions that cross -----------------------------------------------------------------------

/// How a callable crosses to a pool's worker: a function pointer as its code_location; an empty
/// class (a lambda without captures) as nothing; a type with a codec through the codec; any
/// other trivially copyable class (a lambda capturing numbers by value) as its bytes.
template <class Fn>
constexpr bool shippable_callable =
    std::is_pointer_v<Fn> ||
    (std::is_empty_v<Fn> && std::is_default_constructible_v<Fn>) || transferable<Fn> ||
    (std::is_class_v<Fn> && std::is_trivially_copyable_v<Fn>);

template <class Fn>
struct cannot_ship_callable {
  static_assert(shippable_callable<Fn>,
                "parallel: this function object cannot be sent to a worker process: its captures "
                "are not all trivially copyable. Capture numbers by value, pass the other values "
                "as arguments (starmap / submit), give the function object a parallel::codec "
                "specialisation, or use parallel::processes<parallel::start::fork>, whose workers "
                "see the caller's memory");
};

/// A closure crosses as its bytes, which C++ cannot tell apart: an int capture and a reference
/// capture may look the same to the type system. At run time they differ: a reference or a
/// pointer is the address of mapped memory, which means nothing (or something stale) in a
/// worker. Such a closure is refused here instead of running on the wrong memory.
inline void refuse_addresses(const void* closure, std::size_t size) {
  for (std::size_t at = 0; at + sizeof(std::uintptr_t) <= size; at += alignof(std::uintptr_t)) {
    std::uintptr_t word;
    std::memcpy(&word, static_cast<const std::byte*>(closure) + at, sizeof word);
    if (os::is_mapped_address(word)) {
      throw parallel::error(
          "parallel: the function sent to a worker process captures an address (a capture by "
          "reference, or a pointer): it would mean nothing in the worker. Capture values "
          "([x] or [=]), pass the data as arguments, or use "
          "parallel::processes<parallel::start::fork>, whose workers read the caller's memory");
    }
  }
}

template <class Fn>
void encode_callable(encoder& out, const Fn& fn) {
  static_cast<void>(sizeof(cannot_ship_callable<Fn>));
  if constexpr (std::is_pointer_v<Fn>) {
    encode_location(out, locate(reinterpret_cast<const void*>(fn)));
  } else if constexpr (std::is_empty_v<Fn> && std::is_default_constructible_v<Fn>) {
  } else if constexpr (transferable<Fn>) {
    out.write(fn);
  } else {
    refuse_addresses(&fn, sizeof(Fn));
    out.write_bytes(&fn, sizeof(Fn));
  }
}

template <class Fn>
Fn decode_callable(decoder& in) {
  if constexpr (std::is_pointer_v<Fn>) {
    return reinterpret_cast<Fn>(const_cast<void*>(resolve(decode_location(in))));
  } else if constexpr (std::is_empty_v<Fn> && std::is_default_constructible_v<Fn>) {
    return Fn{};
  } else if constexpr (transferable<Fn>) {
    return in.read<Fn>();
  } else {
    // The bytes of a trivially copyable object are the object (it has an implicit lifetime).
    alignas(Fn) unsigned char raw[sizeof(Fn)];
    in.read_bytes(raw, sizeof(Fn), "function object");
    return *std::launder(reinterpret_cast<Fn*>(raw));
  }
}

/// A worker's entry point for a shipped task, the same code in every process of the executable.
using trampoline = void (*)(const task_header&, decoder&, chunk_output&);

/// map / imap on a pool: the function, then one argument per item.
template <class Fn, class Arg, bool Apply>
void run_items(const task_header& task, decoder& body, chunk_output& out) {
  std::optional<Fn> fn;
  try {
    fn.emplace(decode_callable<Fn>(body));
  } catch (...) {
    out.fail_current(task.first);
    return;
  }
  const bool timed = (task.flags & task_timed) != 0;
  if constexpr (!Apply && crosses_as_bytes<Arg>) {
    // Items that are their bytes: one block, read in place.
    if (task.count > body.remaining() / sizeof(Arg))
      parallel::detail::protocol_error("a task of " + std::to_string(task.count) +
                                       " items carries " + std::to_string(body.remaining()) +
                                       " bytes of them");
    const std::byte* block =
        body.read_span(static_cast<std::size_t>(task.count) * sizeof(Arg), type_name<Arg>()).data();
    out.run(task.first, task.count, timed, [&](std::uint64_t index) {
      Arg arg = value_in_block<Arg>(block, static_cast<std::size_t>(index - task.first));
      return invoke_or_unit(*fn, arg);
    });
    return;
  }
  out.run(task.first, task.count, timed, [&](std::uint64_t) {
    Arg arg = body.read<Arg>();
    if constexpr (Apply)
      return std::apply([&fn](auto&... a) -> decltype(auto) { return invoke_or_unit(*fn, a...); },
                        arg);
    else
      return invoke_or_unit(*fn, arg);
  });
}

/// submit on a pool: the function, then its arguments as one tuple.
template <class Fn, class Args>
void run_call(const task_header& task, decoder& body, chunk_output& out) {
  run_items<Fn, Args, true>(task, body, out);
}

template <auto Trampoline>
const code_location& trampoline_location() {
  static const code_location where = locate(reinterpret_cast<const void*>(Trampoline));
  return where;
}

/// The worker side of a pool: finds the trampoline a task names and runs it.
inline void run_shipped(const task_header& task, decoder& body, chunk_output& out) {
  const code_location where = decode_location(body);
  const auto entry = reinterpret_cast<trampoline>(const_cast<void*>(resolve(where)));
  entry(task, body, out);
}

}  // namespace parallel::detail::ipc
