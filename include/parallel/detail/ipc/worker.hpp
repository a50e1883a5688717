// The worker's side: the loop a worker process runs until its caller closes the channel, and
// the payloads it reads and writes. The caller's side is engine.hpp.
//
// Payloads (inside the frames of frame.hpp; integers 64-bit, strings as the codec writes them):
//
//   hello   worker -> caller  pid, code_location of identity_anchor
//   task    caller -> worker  first item index, item count, flags, then the body: nothing (a
//                             fork-per-call worker reads items in place), or the items, or the
//                             trampoline's code_location + the function + the items/arguments
//   result  worker -> caller  nanoseconds spent, k = results produced, k results, then a byte:
//                             1 when item first + k threw: its type name and what()
//
// Tasks and results travel through the shared rings of arena.hpp when there are rings; the
// frames are the same there as on the socket.
#pragma once

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "../no_result.hpp"
#include "../process_platform.hpp"
#include "arena.hpp"
#include "frame.hpp"
#include "frame_reader.hpp"
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
  chunk_output(std::vector<std::byte>& buffer, control_block& control)
      : buffer_(buffer), out_(buffer), control_(control) {
    started_ = os::monotonic_ns();
    buffer_.resize(16);  // nanoseconds and count, patched at the end
  }

  /// Runs produce(i) for i in [first, first + count) and encodes each result; stops at the
  /// first exception (thrown by produce or by the result's codec) and records it.
  template <class Produce>
  void run(std::uint64_t first, std::uint64_t count, bool timed, Produce&& produce) {
    using R = std::remove_cvref_t<std::invoke_result_t<Produce&, std::uint64_t>>;
    if constexpr (crosses_as_bytes<R>) {
      // Results that are their bytes: the block is sized once and each result copied in.
      const std::size_t mark = buffer_.size();
      buffer_.resize(mark + static_cast<std::size_t>(count) * sizeof(R));
      for (std::uint64_t k = 0; k < count; ++k) {
        const std::uint64_t index = first + k;
        control_.current_index.store(index, std::memory_order_relaxed);
        if (timed) control_.started_ns.store(os::monotonic_ns(), std::memory_order_release);
        try {
          const R value = produce(index);
          std::memcpy(buffer_.data() + mark + k * sizeof(R), &value, sizeof(R));
          ++produced_;
        } catch (...) {
          buffer_.resize(mark + static_cast<std::size_t>(k) * sizeof(R));
          fail_current(index);
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
    out_.write(std::uint8_t{0});
  }

 private:
  void patch() {
    const std::uint64_t took = os::monotonic_ns() - started_;
    std::memcpy(buffer_.data(), &took, 8);
    std::memcpy(buffer_.data() + 8, &produced_, 8);
  }

  std::vector<std::byte>& buffer_;
  encoder out_;
  control_block& control_;
  std::uint64_t started_ = 0;
  std::uint64_t produced_ = 0;
  bool failed_ = false;
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

// --- a pool's hooks (their caller's side is hooks.hpp) ----------------------------------------

using hook_trampoline = void (*)(decoder&);

/// Runs a hook encoded by encode_hook; what it throws goes to the caller.
inline void run_hook(std::span<const std::byte> call) {
  decoder in(call);
  const auto entry =
      reinterpret_cast<hook_trampoline>(const_cast<void*>(resolve(decode_location(in))));
  entry(in);
}

struct hook_calls {
  std::span<const std::byte> init;  // empty: none
  std::span<const std::byte> exit;
};

/// The two hooks in the block pack_hooks made: the initializer's length, the initializer, then
/// on_exit.
inline hook_calls unpack_hooks(std::span<const std::byte> block) {
  if (block.empty()) return {};
  std::uint64_t length = 0;
  if (block.size() < sizeof length) wire::protocol_error("the pool's hooks are cut short");
  std::memcpy(&length, block.data(), sizeof length);
  if (length > block.size() - sizeof length)
    wire::protocol_error("the pool's initializer is longer than the hooks that carry it");
  const auto rest = block.subspan(sizeof length);
  return {rest.first(static_cast<std::size_t>(length)),
          rest.subspan(static_cast<std::size_t>(length))};
}

/// A worker that cannot start (its pool's initializer threw): tells the caller why, in an error
/// frame before any handshake, and ends.
[[noreturn]] inline void refuse_to_start(os::native_handle channel, const std::string& why) {
  encoder message;
  message.write(why);
  const auto bytes = encode_frame(frame_type::error, frame_flags::none, 0, message.bytes());
  (void)os::write_all(channel, bytes.data(), bytes.size());
  std::fflush(nullptr);
  os::exit_now(71);
}

// --- the loop
// -------------------------------------------------------------------------------------

/// After its last task a worker watches its task ring this long before it sleeps on the socket:
/// a caller that sends the next task within it needs no system call on either side.
inline constexpr std::uint64_t worker_spin_ns = 50'000;

/// Runs a worker until the caller closes the channel (or asks it to shut down), then ends the
/// process. `handle(header, body, out)` does one task. Never returns.
/// The pool's hooks come in the arena: its initializer runs after the hello is sent, so the
/// handshake never waits for user code; if it throws, the caller hears why in an error frame and
/// the worker ends. Its on_exit runs after the last task, when the caller closed the channel or
/// said shutdown (retiring this worker, or ending the pool); what it throws goes to stderr.
///
/// Tasks come through the shared task ring (a task too large for it, or sent when it was full,
/// leaves a payload_on_channel mark there and comes whole on the socket); results go back
/// through the result ring the same way. Without rings (an address-space limit) both go through
/// the socket. The socket also carries the hello, doorbells (the caller wakes a sleeping worker
/// with one) and the end: the caller closes it, or sends shutdown.
template <class Handle>
[[noreturn]] void worker_main(os::native_handle channel, arena& shared, Handle&& handle) {
  control_block& control = shared.control();
  frame_ring tasks = shared.task_ring();
  frame_ring results = shared.result_ring();
  const bool rings = tasks.usable() && results.usable();
  std::vector<std::byte> out;      // frames waiting to be written to the socket
  std::vector<std::byte> payload;  // the result being built
  // Not zero-filled: a fresh worker's first writes are copy-on-write faults, the fewer the better.
  constexpr std::size_t incoming_size = std::size_t{64} << 10;
  const std::unique_ptr<std::byte[]> incoming(new std::byte[incoming_size]);
  frame_reader reader(max_task_payload);
  std::deque<frame> channel_tasks;  // task frames read from the socket, in order
  bool ended = false;               // the caller closed the channel or said shutdown
  std::uint64_t seq = 0;
  int exit_code = 0;

  // hello: pid, the anchor's location, and whether the worker is ready for tasks. With an
  // initializer a first hello says "alive" before it runs and a second "ready" after it.
  const auto say_hello = [&](bool ready) {
    encoder hello;
    hello.write(static_cast<std::uint64_t>(os::current_pid()));
    encode_location(hello, anchor_location());
    hello.write(static_cast<std::uint8_t>(ready ? 1 : 0));
    append_frame(out, frame_type::hello, frame_flags::none, 0, hello.bytes());
  };
  hook_calls hooks;
  try {
    hooks = unpack_hooks(shared.hooks());
  } catch (const std::exception& e) {
    refuse_to_start(channel, e.what());
  }
  if (!hooks.init.empty()) {
    say_hello(false);
    if (!os::write_all(channel, out.data(), out.size())) os::exit_now(0);
    out.clear();
    try {
      run_hook(hooks.init);
    } catch (...) {
      refuse_to_start(channel, "parallel: the pool's initializer raised " +
                                   current_exception_type_name() + ": " +
                                   current_exception_message());
    }
  }
  // The end of a worker that was ready (its initializer ran): on_exit, then the exit code. What
  // on_exit throws goes to stderr: the pool may be gone, nobody else is left to hear it.
  const auto ending = [&](int code) {
    if (code == 0 && !hooks.exit.empty()) {
      try {
        run_hook(hooks.exit);
      } catch (...) {
        std::fprintf(stderr, "parallel: worker %ld: the pool's on_exit raised %s: %s\n",
                     static_cast<long>(os::current_pid()), current_exception_type_name().c_str(),
                     current_exception_message().c_str());
        code = 70;
      }
    }
    std::fflush(nullptr);
    return code;
  };
  say_hello(true);
  // The caller may have let go while the initializer ran (the pool ended): on_exit still
  // follows the initializer.
  if (!os::write_all(channel, out.data(), out.size())) os::exit_now(ending(0));
  out.clear();

  // One blocking read of the socket, sorted: tasks queue, doorbells only woke us. False when
  // the caller is gone, closed the channel or said shutdown.
  const auto read_channel = [&]() -> bool {
    const std::ptrdiff_t n = os::read_some(channel, incoming.get(), incoming_size, false);
    if (n <= 0) return false;
    reader.feed(std::span(incoming.get(), static_cast<std::size_t>(n)));
    while (std::optional<frame> f = reader.next()) {
      if (f->type == frame_type::shutdown) return false;
      if (f->type == frame_type::doorbell) continue;
      if (f->type != frame_type::task || f->flags != frame_flags::none)
        wire::protocol_error(std::string("a worker received a ") + to_string(f->type) + " frame");
      channel_tasks.push_back(std::move(*f));
    }
    return true;
  };

  // A result goes out at once: holding it back to batch it with the next one would make it
  // wait for that task, however long it runs. Through the ring when it fits; otherwise whole
  // on the socket and a mark in the ring, written after it (the caller finds it complete).
  const auto send_result = [&](std::uint64_t task_id, frame_flags flags,
                               std::span<const std::byte> bytes) -> bool {
    if (!rings) {
      append_frame(out, frame_type::result, flags, task_id, bytes);
      const bool written = os::write_all(channel, out.data(), out.size());
      out.clear();
      return written;
    }
    if (!results.put(frame_type::result, flags, task_id, bytes)) {
      append_frame(out, frame_type::result, flags, task_id, bytes);
      const bool written = os::write_all(channel, out.data(), out.size());
      out.clear();
      if (!written) return false;
      // The caller frees the ring as it reads it: room for a mark comes.
      while (!results.put(frame_type::result, frame_flags::payload_on_channel, task_id, {}))
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    results.commit();
    if (control.caller_bell.must_ring()) {
      const header_bytes bell = encode_header(frame_type::doorbell, frame_flags::none, 0, 0);
      if (!os::write_all(channel, bell.data(), bell.size())) return false;
    }
    return true;
  };

  // Runs one task (already taken from where it came); false when the caller is gone.
  const auto run_task = [&](std::uint64_t task_id, std::span<const std::byte> body) -> bool {
    if (!control.take(++seq)) {
      // The caller withdrew this task before it started (it went to an idle worker, or its
      // call was left): say so, so that the results still come in the order sent.
      return send_result(task_id, frame_flags::withdrawn, {});
    }
    decoder in(body);
    const task_header task = read_task_header(in);
    if ((task.flags & task_timed) != 0)
      control.started_ns.store(os::monotonic_ns(), std::memory_order_relaxed);
    control.current_index.store(task.first, std::memory_order_relaxed);
    control.started_seq.store(seq, std::memory_order_release);
    payload.clear();
    chunk_output result(payload, control);
    try {
      handle(task, in, result);
    } catch (...) {
      result.fail_current(task.first);
    }
    result.close();
    return send_result(task_id, frame_flags::none, payload);
  };

  // The next task from the socket, waiting for it: false at the end.
  const auto next_channel_task = [&]() -> bool {
    while (channel_tasks.empty()) {
      if (ended) return false;
      if (!read_channel()) ended = true;
    }
    return true;
  };

  try {
    for (;;) {
      if (rings) {
        std::optional<frame_ring::record> r = tasks.peek(max_task_payload);
        if (r) {
          if (r->header.type != frame_type::task)
            wire::protocol_error(std::string("a worker found a ") + to_string(r->header.type) +
                                 " frame in its task ring");
          bool going = true;
          if (has_flag(r->header.flags, frame_flags::payload_on_channel)) {
            if (!next_channel_task()) break;
            const frame f = std::move(channel_tasks.front());
            channel_tasks.pop_front();
            if (f.task_id != r->header.task_id)
              wire::protocol_error("a task's mark in the ring names task " +
                                   std::to_string(r->header.task_id) + ", the socket brought " +
                                   std::to_string(f.task_id));
            going = run_task(f.task_id, f.payload);
          } else {
            going = run_task(r->header.task_id, r->payload);
          }
          tasks.consume(*r);  // the task's bytes were read in place until now
          if (!going) break;
          continue;
        }
        if (ended) break;
        if (spin_until([&] { return tasks.ready(); }, worker_spin_ns)) continue;
        control.worker_bell.sleeping();
        if (tasks.ready()) {
          control.worker_bell.awake();
          continue;
        }
        const bool open = read_channel();
        control.worker_bell.awake();
        if (!open) ended = true;  // what the ring still holds was sent before the end
        continue;
      }
      if (channel_tasks.empty() && !next_channel_task()) break;
      frame f = std::move(channel_tasks.front());
      channel_tasks.pop_front();
      if (!run_task(f.task_id, f.payload)) break;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parallel: worker %ld stops: %s\n", static_cast<long>(os::current_pid()),
                 e.what());
    exit_code = 70;  // EX_SOFTWARE
  }
  os::exit_now(ending(exit_code));
}

}  // namespace parallel::detail::ipc
