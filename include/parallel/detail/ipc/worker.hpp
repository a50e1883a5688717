// The worker's side: the loop a worker process runs until its caller closes the channel, and
// the payloads it reads and writes (a task's header, its result and shipped functions are in
// task.hpp, which both sides use). The caller's side is engine.hpp.
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

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "../process_platform.hpp"
#include "arena.hpp"
#include "frame.hpp"
#include "frame_reader.hpp"
#include "identity.hpp"
#include "task.hpp"

namespace parallel::detail::ipc {

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

/// What a worker does with one task: calls `handle(header, body, out)` on a callable it refers
/// to (which must outlive it). worker_main takes this rather than the callable's type, so that
/// its loop is compiled once per program, not once per function a program maps (each per-call
/// fork map and imap has a handler of its own type: the loop, instantiated for each, was 12% of
/// the code of tests/test_processes.cpp).
class task_handler {
 public:
  /// Implicit, so that a starter writes worker_main(channel, shared, handle).
  template <class Handle>
  requires(!std::is_same_v<std::remove_cvref_t<Handle>, task_handler>) task_handler(Handle&& handle)
  noexcept
      : handle_(static_cast<const void*>(std::addressof(handle))),
        call_([](const void* h, const task_header& task, decoder& body, chunk_output& out) {
          (*static_cast<std::remove_reference_t<Handle>*>(const_cast<void*>(h)))(task, body, out);
        }) {}

  void operator()(const task_header& task, decoder& body, chunk_output& out) const {
    call_(handle_, task, body, out);
  }

 private:
  const void* handle_;
  void (*call_)(const void*, const task_header&, decoder&, chunk_output&);
};

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
[[noreturn]] inline void worker_main(os::native_handle channel, arena& shared,
                                     task_handler handle) {
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

  // Publishes the result frames written in the ring, and rings the caller if it sleeps.
  const auto publish_results = [&]() -> bool {
    results.commit();
    if (control.caller_bell.must_ring()) {
      const header_bytes bell = encode_header(frame_type::doorbell, frame_flags::none, 0, 0);
      if (!os::write_all(channel, bell.data(), bell.size())) return false;
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
    return publish_results();
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
    chunk_output result(payload, control, rings ? &results : nullptr, task_id);
    try {
      handle(task, in, result);
    } catch (...) {
      result.fail_current(task.first);
    }
    result.close();
    if (result.in_ring()) return publish_results();
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
