// parallel::process where there is no fork() (Windows): the child is this executable run again
// (marker "p:1:<parent pid>"), and what it runs crosses as a pool's task does: the location of a
// trampoline instantiated for (F, argument tuple), f's closure and the arguments, through the
// codec. The parent writes that one frame into a pipe made big enough to hold it, so the write
// never waits for the child, and closes it; the child reads to the end, runs f and exits with
// 0, or with 1 after printing the exception f threw, as the forked child does on POSIX.
#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "../ipc/frame.hpp"
#include "../ipc/frame_reader.hpp"
#include "../ipc/identity.hpp"
#include "../ipc/task.hpp"
#include "../win32/channel.hpp"
#include "../win32/process.hpp"

namespace parallel::detail {

using process_trampoline = void (*)(decoder&);

/// The child's whole life after the frame: decode f and its arguments, call, exit.
template <class Fn, class Tuple>
[[noreturn]] void run_process_task(decoder& in) {
  int code = 0;
  try {
    Fn fn = ipc::decode_callable<Fn>(in);
    Tuple args = in.read<Tuple>();
    std::apply([&fn](auto&... a) { std::invoke(std::move(fn), std::move(a)...); }, args);
  } catch (...) {
    os::report_process_exception();
    code = 1;
  }
  std::fflush(nullptr);
  os::exit_now(code);
}

/// Starts the child that runs fn(args...); returns its pid.
template <class Fn, class... Args>
os::pid_type start_process_child(const Fn& fn, const std::tuple<Args...>& args) {
  static_cast<void>(sizeof(ipc::cannot_ship_callable<Fn>));
  require_transferable<std::tuple<Args...>>();
  std::vector<std::byte> payload;
  {
    encoder out(payload);
    ipc::encode_location(out,
                         ipc::trampoline_location<&run_process_task<Fn, std::tuple<Args...>>>());
    ipc::encode_callable(out, fn);
    out.write(args);
  }
  const std::vector<std::byte> frame =
      ipc::encode_frame(ipc::frame_type::task, ipc::frame_flags::none, 0, payload);
  auto [reader, writer] = os::pipe_with_room(frame.size());
  const os::pid_type pid =
      os::spawn_self({reader.get()}, "p:1:" + std::to_string(os::current_pid()));
  reader.reset();
  (void)os::write_all(writer.get(), frame.data(),
                      frame.size());  // a child gone early: its exit code says so
  return pid;
}

/// The child's side, from spawn_main. Never returns.
[[noreturn]] inline void run_process_child(os::native_handle channel) {
  os::become_worker(0);
  ipc::frame_reader reader(ipc::max_task_payload);
  std::vector<std::byte> buffer(std::size_t{64} << 10);
  try {
    for (;;) {
      const std::ptrdiff_t n = os::read_some(channel, buffer.data(), buffer.size(), false);
      if (n <= 0) break;
      reader.feed(std::span(buffer.data(), static_cast<std::size_t>(n)));
    }
    reader.finish();
    std::optional<ipc::frame> task = reader.next();
    if (!task || task->type != ipc::frame_type::task)
      ipc::wire::protocol_error("a process child received no task");
    decoder in(task->payload);
    const auto entry = reinterpret_cast<process_trampoline>(
        const_cast<void*>(ipc::resolve(ipc::decode_location(in))));
    entry(in);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parallel::process: the child cannot start: %s\n", e.what());
  }
  os::exit_now(70);
}

}  // namespace parallel::detail
