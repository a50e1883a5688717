// The MPI transport: the frames of detail/ipc, carried in MPI messages on a communicator of the
// library's own, and the loop a rank other than 0 runs. Every rank runs the same executable, so
// a task names its code exactly as on a process pool (trampoline + code location, identity.hpp)
// and a rank runs it with the same worker code (ipc::run_shipped).
//
// Messages (tags on the library's communicator, a duplicate of MPI_COMM_WORLD, so that the
// program's own messages never mix with these):
//
//   hello   rank r -> 0   one frame: pid, code_location of the library's anchor, r
//   task    0 -> rank r   one frame: the job's payload (task header, trampoline, f, items)
//   result  rank r -> 0   one frame: the result payload of worker.hpp
//   stop    0 -> rank r   empty: rank 0's program ended; finalize and exit
//
// A frame is sent as one message, header and payload gathered by an MPI datatype from where
// they lie (no copy into a staging buffer), and received whole: its size is known from the
// probe, checked against the limit before anything is allocated, and the header is checked as
// on a socket (frame.hpp) before the payload is trusted.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../../codec.hpp"
#include "../../errors.hpp"
#include "../ipc/arena.hpp"
#include "../ipc/frame.hpp"
#include "../ipc/identity.hpp"
#include "../ipc/task.hpp"
#include "../process_platform.hpp"
#include "mpi_api.hpp"

namespace parallel::detail::ranks {

enum tag : int { tag_hello = 7101, tag_task = 7102, tag_result = 7103, tag_stop = 7104 };

/// What mpi_main found and set up, per process.
struct runtime {
  bool started = false;  // mpi_main ran (and initialized MPI, or found it initialized)
  bool serving = false;  // this rank serves tasks (rank > 0), inside mpi_main
  int rank = 0;
  int size = 1;
  MPI_Comm comm = MPI_COMM_NULL;  // the library's own communicator
};

inline runtime& state() {
  static runtime s;
  return s;
}

inline std::string describe_mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

/// Throws parallel::error naming the MPI call that failed (the library's communicator returns
/// errors instead of aborting the job: MPI_ERRORS_RETURN).
inline void check(int code, const char* call) {
  if (code != MPI_SUCCESS)
    throw parallel::error(std::string("parallel: ") + call +
                          " failed: " + describe_mpi_error(code));
}

/// Waits between polls. MPI has no blocking wait for "a message or something else", and Open
/// MPI's own blocking receive spins a core at 100%, which on a machine with more ranks than cores
/// takes the CPU the busy ranks need. So: poll back-to-back for 50 us after the last activity
/// (a reply often comes that fast), then yield the CPU between polls up to 1 ms, then sleep
/// between polls, longer and longer up to 1 ms: an idle rank costs next to nothing.
class backoff {
 public:
  void reset() noexcept { idle_since_ = 0; }
  void pause() {
    const std::uint64_t now = os::monotonic_ns();
    if (idle_since_ == 0) idle_since_ = now;
    const std::uint64_t idle = now - idle_since_;
    if (idle < 50'000) return;  // spin
    if (idle < 1'000'000) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(
        std::chrono::nanoseconds(std::min<std::uint64_t>(idle / 8, 1'000'000)));
  }

 private:
  std::uint64_t idle_since_ = 0;
};

/// A received frame: the whole message, its checked header, and the payload inside it.
struct message {
  int source = -1;
  int tag = 0;
  ipc::frame_header header{};
  std::vector<std::byte> bytes;
  std::span<const std::byte> payload() const noexcept {
    return std::span(bytes).subspan(ipc::header_size);
  }
};

/// Receives the probed message `m` (an empty one for the stop tag); for the other tags checks
/// that it is one well-formed frame of at most `max_payload` bytes of payload, before
/// allocating for it. Throws parallel::error (a protocol error) otherwise; the message is
/// received either way, so the stream stays in step.
inline message receive(MPI_Message& m, const MPI_Status& status, std::size_t max_payload) {
  message out;
  out.source = status.MPI_SOURCE;
  out.tag = status.MPI_TAG;
  int count = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
  const auto size = static_cast<std::size_t>(count < 0 ? 0 : count);
  if (size > ipc::header_size + max_payload || size < ipc::header_size) {
    char sink = 0;  // drop it: MPI truncates into the one byte (the error is ours to report)
    MPI_Status ignored;
    (void)MPI_Mrecv(&sink, size > 0 ? 1 : 0, MPI_BYTE, &m, &ignored);
    if (out.tag == tag_stop && size == 0) return out;
    ipc::wire::protocol_error(
        "a message of " + std::to_string(size) + " bytes from MPI rank " +
        std::to_string(out.source) +
        (size < ipc::header_size
             ? " is shorter than a frame header"
             : " is over the limit of " + std::to_string(max_payload) + " payload bytes"));
  }
  out.bytes.resize(size);
  MPI_Status received;
  check(MPI_Mrecv(out.bytes.data(), count, MPI_BYTE, &m, &received), "MPI_Mrecv");
  out.header = ipc::decode_header(
      std::span<const std::byte, ipc::header_size>(out.bytes.data(), ipc::header_size),
      max_payload);
  if (out.header.payload_length != size - ipc::header_size) {
    ipc::wire::protocol_error("a frame from MPI rank " + std::to_string(out.source) + " says " +
                              std::to_string(out.header.payload_length) +
                              " payload bytes, its message carries " +
                              std::to_string(size - ipc::header_size));
  }
  if (ipc::has_flag(out.header.flags, ipc::frame_flags::payload_on_channel))
    ipc::wire::protocol_error("a shared-ring mark over MPI (ranks share no ring)");
  return out;
}

/// The datatype that gathers a frame's header and payload from where they lie: one message, no
/// staging copy. MPI counts in int: a payload of 2 GiB or more cannot be one message.
class frame_type_guard {
 public:
  frame_type_guard(const ipc::header_bytes& header, std::span<const std::byte> payload) {
    if (payload.size() > static_cast<std::size_t>(INT_MAX) - ipc::header_size) {
      throw parallel::error(
          "parallel: a task or result of " + std::to_string(payload.size()) +
          " bytes is too large for one MPI message (the limit is 2 GiB); split the work into "
          "smaller items");
    }
    int lengths[2] = {static_cast<int>(ipc::header_size), static_cast<int>(payload.size())};
    MPI_Aint where[2];
    check(MPI_Get_address(header.data(), &where[0]), "MPI_Get_address");
    check(MPI_Get_address(payload.data(), &where[1]), "MPI_Get_address");
    check(MPI_Type_create_hindexed(payload.empty() ? 1 : 2, lengths, where, MPI_BYTE, &type_),
          "MPI_Type_create_hindexed");
    check(MPI_Type_commit(&type_), "MPI_Type_commit");
  }
  frame_type_guard(const frame_type_guard&) = delete;
  frame_type_guard& operator=(const frame_type_guard&) = delete;
  // Freeing a datatype that a pending send uses is allowed: MPI frees it after the send.
  ~frame_type_guard() { MPI_Type_free(&type_); }
  MPI_Datatype get() const noexcept { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

/// Sends one frame and waits until its buffers may be reused.
inline void send_frame(ipc::frame_type type, std::uint64_t id, std::span<const std::byte> payload,
                       int destination, int message_tag) {
  const ipc::header_bytes header =
      ipc::encode_header(type, ipc::frame_flags::none, id, payload.size());
  const frame_type_guard gathered(header, payload);
  check(MPI_Send(MPI_BOTTOM, 1, gathered.get(), destination, message_tag, state().comm),
        "MPI_Send");
}

/// Waits for the next message from `source` (any tag), polling with back-off.
inline void wait_for_message(int source, MPI_Message& m, MPI_Status& status) {
  backoff wait;
  for (;;) {
    int found = 0;
    check(MPI_Improbe(source, MPI_ANY_TAG, state().comm, &found, &m, &status), "MPI_Improbe");
    if (found != 0) return;
    wait.pause();
  }
}

/// Runs one task payload (a job's, as engine.hpp would send it to a pool worker) and builds its
/// result payload: rank r's work, and rank 0's own when it is alone.
inline void run_task(std::span<const std::byte> payload, std::vector<std::byte>& result) {
  static ipc::control_block control;  // progress marks nobody reads across MPI
  decoder in(payload);
  const ipc::task_header task = ipc::read_task_header(in);
  result.clear();
  ipc::chunk_output out(result, control);
  try {
    ipc::run_shipped(task, in, out);
  } catch (...) {
    out.fail_current(task.first);
  }
  out.close();
}

/// Hears rank 0's stop while a rank runs a long task. A task can overrun its timeout and never
/// end; without this the rank would never reach MPI_Finalize, every rank's MPI_Finalize would
/// wait for it, and the only way out was MPI_Abort (after which Open MPI 4.1's mpirun sometimes
/// crashes or hangs in its own shutdown). So a thread of the rank wakes every 50 ms and, while a
/// task has run for longer than that, asks MPI whether rank 0 said stop; if so it finalizes MPI
/// and ends the process (std::_Exit: the task cannot be stopped, nor static destructors run under
/// it), and the job ends normally.
///
/// The task runs on the main thread, as it would without the watch: no hand-off per task. The
/// main thread and the watch never make MPI calls at the same time: the main thread holds
/// `mpi()` except while it runs a task, and the watch only try-locks it (so it never keeps the
/// main thread waiting long, nor waits for it). The watch finalizes MPI off the main thread;
/// MPI asks ("should") for the main thread, which is running the task. When no thread can be
/// started (a process limit), there is no watch.
class stop_watch {
 public:
  stop_watch() {
    try {
      thread_ = std::thread([this] { loop(); });
    } catch (const std::system_error&) {
      // no watch
    }
  }
  stop_watch(const stop_watch&) = delete;
  stop_watch& operator=(const stop_watch&) = delete;
  ~stop_watch() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(sleep_mutex_);
      quit_ = true;
    }
    woken_.notify_all();
    thread_.join();
  }

  /// Held by the main thread while it makes MPI calls: everywhere but inside a task.
  std::mutex& mpi() noexcept { return mpi_; }
  /// Around a task, with mpi() unlocked.
  void task_begins() noexcept { task_since_.store(os::monotonic_ns(), std::memory_order_relaxed); }
  void task_ended() noexcept { task_since_.store(0, std::memory_order_relaxed); }

 private:
  static constexpr std::uint64_t period_ns = 50'000'000;

  void loop() {
    std::unique_lock sleep(sleep_mutex_);
    for (;;) {
      woken_.wait_for(sleep, std::chrono::nanoseconds(period_ns), [&] { return quit_; });
      if (quit_) return;
      const std::uint64_t since = task_since_.load(std::memory_order_relaxed);
      if (since == 0 || os::monotonic_ns() - since < period_ns) continue;
      std::unique_lock calls(mpi_, std::try_to_lock);
      if (!calls.owns_lock()) continue;  // the main thread is between tasks after all
      int found = 0;
      MPI_Message m;
      MPI_Status status;
      if (MPI_Improbe(0, tag_stop, state().comm, &found, &m, &status) != MPI_SUCCESS || found == 0)
        continue;
      char none = 0;
      (void)MPI_Mrecv(&none, 0, MPI_BYTE, &m, &status);
      // Rank 0's program ended while this rank's task ran on: leave it, and end with the
      // others. mpi_ stays locked: the main thread makes no MPI call after this.
      calls.release();
      std::fflush(nullptr);
      MPI_Comm_free(&state().comm);
      MPI_Finalize();
      std::_Exit(0);
    }
  }

  std::mutex mpi_;
  std::atomic<std::uint64_t> task_since_{0};  // when the running task began, 0 between tasks
  std::mutex sleep_mutex_;
  std::condition_variable woken_;
  bool quit_ = false;
  std::thread thread_;
};

/// The life of a rank other than 0, from mpi_main: hello, then tasks until rank 0 says stop;
/// then MPI_Finalize and exit(0). Never returns.
[[noreturn]] inline void serve() {
  runtime& rt = state();
  rt.serving = true;
  try {
    encoder hello;
    hello.write(static_cast<std::uint64_t>(os::current_pid()));
    ipc::encode_location(hello, ipc::anchor_location());
    hello.write(static_cast<std::uint64_t>(rt.rank));
    send_frame(ipc::frame_type::hello, 0, hello.bytes(), 0, tag_hello);

    std::vector<std::byte> result;
    stop_watch watch;
    std::unique_lock calls(watch.mpi());
    for (;;) {
      MPI_Message m;
      MPI_Status status;
      wait_for_message(0, m, status);
      message in = receive(m, status, ipc::max_task_payload);
      if (in.tag == tag_stop) break;
      if (in.tag != tag_task || in.header.type != ipc::frame_type::task) {
        ipc::wire::protocol_error("MPI rank " + std::to_string(rt.rank) + " received a " +
                                  ipc::to_string(in.header.type) + " frame with tag " +
                                  std::to_string(in.tag));
      }
      watch.task_begins();
      calls.unlock();
      run_task(in.payload(), result);
      calls.lock();
      watch.task_ended();
      send_frame(ipc::frame_type::result, in.header.task_id, result, 0, tag_result);
    }
  } catch (const std::exception& e) {
    // Rank 0 sent what no build of this program sends, or MPI failed: this rank cannot go on,
    // and under Open MPI a rank that ends without MPI_Finalize ends the job anyway.
    std::fprintf(stderr, "parallel: MPI rank %d stops: %s\n", rt.rank, e.what());
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, 70);
  }
  std::fflush(nullptr);
  MPI_Comm_free(&rt.comm);
  MPI_Finalize();
  std::exit(0);
}

}  // namespace parallel::detail::ranks
