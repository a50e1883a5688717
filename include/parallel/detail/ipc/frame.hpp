// The wire format between the caller and its worker processes: a 32-byte header, then the
// payload. Pure logic, no OS calls: the transport writes what encode_header/append_frame
// produce and feeds what it reads to a frame_reader (frame_reader.hpp). Why it looks like
// this: README.md in this folder.
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../../errors.hpp"

namespace parallel::detail::ipc {

// --- the header ----------------------------------------------------------------------------------
//
//   offset  size  field
//        0     4  magic: F0 'P' 'R' 'L' (compared as bytes)
//        4     2  wire version
//        6     2  frame type
//        8     4  flags
//       12     4  checksum: FNV-1a over the other 28 bytes of the header
//       16     8  task id
//       24     8  payload length (bytes that follow the header)
//
// Integers are in the host's byte order (little-endian on every target we build for): both
// ends run the same executable, so there is nothing to convert.

inline constexpr std::size_t header_size = 32;
inline constexpr std::array<std::byte, 4> wire_magic{std::byte{0xF0}, std::byte{'P'},
                                                     std::byte{'R'}, std::byte{'L'}};
inline constexpr std::uint16_t wire_version = 1;

/// Payloads larger than this are refused by default (a reader's policy, not the format's).
inline constexpr std::size_t default_max_payload = std::size_t{1} << 30;

/// What a frame carries. Values are part of the wire format: append, never renumber. A reader
/// refuses values it does not know (is_known).
enum class frame_type : std::uint16_t {
  hello = 1,          // handshake: image identity, both directions
  task = 2,           // caller -> worker: a chunk of work
  result = 3,         // worker -> caller: a chunk's results
  error = 4,          // worker -> caller: a task threw (type name, message, item index)
  chunk_request = 5,  // worker -> caller: room for more work
  shutdown = 6,       // caller -> worker: finish and exit
  heartbeat = 7,      // either way: still alive
  skip = 8,           // in a shared ring (ring.hpp): the next frame is at the next lap's start
  doorbell = 9,       // either way, on the socket: look at the shared ring (doorbell.hpp)
};
inline constexpr std::uint16_t last_frame_type = 9;

constexpr bool is_known(frame_type type) noexcept {
  const auto value = static_cast<std::uint16_t>(type);
  return value >= 1 && value <= last_frame_type;
}

constexpr const char* to_string(frame_type type) noexcept {
  switch (type) {
    case frame_type::hello:
      return "hello";
    case frame_type::task:
      return "task";
    case frame_type::result:
      return "result";
    case frame_type::error:
      return "error";
    case frame_type::chunk_request:
      return "chunk_request";
    case frame_type::shutdown:
      return "shutdown";
    case frame_type::heartbeat:
      return "heartbeat";
    case frame_type::skip:
      return "skip";
    case frame_type::doorbell:
      return "doorbell";
  }
  return "unknown";
}

/// Bit flags of a frame. Unknown bits are refused, so a new flag can never be silently ignored.
enum class frame_flags : std::uint32_t {
  none = 0,
  // Bit 0 is retired (it marked a payload kept in shared memory, before the rings of ring.hpp):
  // refused as unknown, never to be given another meaning.
  // A result frame without payload: the worker did not run the task, which the caller had
  // withdrawn (control_block::withdraw) before it started.
  withdrawn = 1u << 1,
  // A task or result frame in a shared ring, without payload: its payload is the next frame of
  // its type on the socket (it was too large for the ring, or the ring was full).
  payload_on_channel = 1u << 2,
};
inline constexpr std::uint32_t known_flags_mask = (1u << 1) | (1u << 2);

constexpr frame_flags operator|(frame_flags a, frame_flags b) noexcept {
  return static_cast<frame_flags>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}
constexpr bool has_flag(frame_flags set, frame_flags flag) noexcept {
  return (static_cast<std::uint32_t>(set) & static_cast<std::uint32_t>(flag)) != 0;
}

struct frame_header {
  frame_type type{};
  frame_flags flags = frame_flags::none;
  std::uint64_t task_id = 0;
  std::uint64_t payload_length = 0;
};

/// A complete frame as the reader returns it.
struct frame {
  frame_type type{};
  frame_flags flags = frame_flags::none;
  std::uint64_t task_id = 0;
  std::vector<std::byte> payload;
};

using header_bytes = std::array<std::byte, header_size>;

namespace wire {

template <class T>
void store(std::byte* at, T value) noexcept {
  std::memcpy(at, &value, sizeof value);
}

template <class T>
T load(const std::byte* at) noexcept {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

// FNV-1a (32-bit) over the header with the checksum field skipped. Each step is a bijection of
// the running hash, so any change to a single byte changes the result.
inline std::uint32_t header_checksum(std::span<const std::byte, header_size> header) noexcept {
  std::uint32_t hash = 2166136261u;
  for (std::size_t i = 0; i < header_size; ++i) {
    if (i >= 12 && i < 16) continue;
    hash = (hash ^ static_cast<std::uint32_t>(header[i])) * 16777619u;
  }
  return hash;
}

inline std::string hex(std::uint64_t value) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  do {
    out.insert(out.begin(), digits[value & 0xF]);
    value >>= 4;
  } while (value != 0);
  return "0x" + out;
}

[[noreturn]] inline void protocol_error(const std::string& what) {
  throw parallel::error("parallel: protocol error: " + what);
}

}  // namespace wire

// --- encoding --------------------------------------------------------------------------------

/// The header alone, so that a transport can writev() header and payload without copying the
/// payload. Preconditions (the library's own invariants, not the peer's input): the type and
/// the flags are known.
inline header_bytes encode_header(frame_type type, frame_flags flags, std::uint64_t task_id,
                                  std::uint64_t payload_length) {
  assert(is_known(type));
  assert((static_cast<std::uint32_t>(flags) & ~known_flags_mask) == 0);
  header_bytes out{};
  std::memcpy(out.data(), wire_magic.data(), wire_magic.size());
  wire::store<std::uint16_t>(out.data() + 4, wire_version);
  wire::store<std::uint16_t>(out.data() + 6, static_cast<std::uint16_t>(type));
  wire::store<std::uint32_t>(out.data() + 8, static_cast<std::uint32_t>(flags));
  wire::store<std::uint64_t>(out.data() + 16, task_id);
  wire::store<std::uint64_t>(out.data() + 24, payload_length);
  wire::store<std::uint32_t>(out.data() + 12, wire::header_checksum(out));
  return out;
}

/// Appends one frame, its payload `payload` followed by `rest`, to `out`: many small frames
/// batched into one buffer, one write.
inline void append_frame(std::vector<std::byte>& out, frame_type type, frame_flags flags,
                         std::uint64_t task_id, std::span<const std::byte> payload,
                         std::span<const std::byte> rest = {}) {
  const header_bytes header = encode_header(type, flags, task_id, payload.size() + rest.size());
  // Grows by at least half: frames appended one after another to a batch would otherwise
  // relocate the whole batch each time.
  const std::size_t needed = out.size() + header_size + payload.size() + rest.size();
  if (needed > out.capacity()) out.reserve(std::max(needed, out.capacity() + out.capacity() / 2));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), payload.begin(), payload.end());
  out.insert(out.end(), rest.begin(), rest.end());
}

inline std::vector<std::byte> encode_frame(frame_type type, frame_flags flags,
                                           std::uint64_t task_id,
                                           std::span<const std::byte> payload) {
  std::vector<std::byte> out;
  append_frame(out, type, flags, task_id, payload);
  return out;
}

// --- decoding ----------------------------------------------------------------------------------

/// Checks a complete header and returns its fields, or throws parallel::error naming the first
/// violation. The checks run from "is this our stream at all" to "is this frame acceptable":
/// magic, version, checksum (after which the fields can be trusted), type, flags, length.
inline frame_header decode_header(std::span<const std::byte, header_size> bytes,
                                  std::size_t max_payload) {
  if (std::memcmp(bytes.data(), wire_magic.data(), wire_magic.size()) != 0) {
    wire::protocol_error("bad magic " + wire::hex(wire::load<std::uint32_t>(bytes.data())) +
                         " (expected " + wire::hex(wire::load<std::uint32_t>(wire_magic.data())) +
                         "): the peer is not a worker of this executable, or the stream lost "
                         "frame sync");
  }
  const auto version = wire::load<std::uint16_t>(bytes.data() + 4);
  if (version != wire_version) {
    wire::protocol_error("unsupported wire version " + std::to_string(version) +
                         " (this build speaks " + std::to_string(wire_version) + ")");
  }
  const auto sent = wire::load<std::uint32_t>(bytes.data() + 12);
  const auto computed = wire::header_checksum(bytes);
  if (sent != computed) {
    wire::protocol_error("header checksum mismatch (header says " + wire::hex(sent) +
                         ", computed " + wire::hex(computed) + "): the header is corrupted");
  }
  frame_header header;
  const auto type = wire::load<std::uint16_t>(bytes.data() + 6);
  header.type = static_cast<frame_type>(type);
  if (!is_known(header.type)) {
    wire::protocol_error("unknown frame type " + std::to_string(type) + " (this build knows 1 to " +
                         std::to_string(last_frame_type) + ")");
  }
  const auto flags = wire::load<std::uint32_t>(bytes.data() + 8);
  if ((flags & ~known_flags_mask) != 0) {
    wire::protocol_error("unknown flags " + wire::hex(flags) + " in a " + to_string(header.type) +
                         " frame");
  }
  header.flags = static_cast<frame_flags>(flags);
  header.task_id = wire::load<std::uint64_t>(bytes.data() + 16);
  header.payload_length = wire::load<std::uint64_t>(bytes.data() + 24);
  if (has_flag(header.flags, frame_flags::withdrawn) &&
      (header.type != frame_type::result || header.flags != frame_flags::withdrawn ||
       header.payload_length != 0)) {
    wire::protocol_error(std::string("a withdrawn-task mark on a ") + to_string(header.type) +
                         " frame with flags " + wire::hex(flags) + " and " +
                         std::to_string(header.payload_length) + " payload bytes");
  }
  if (has_flag(header.flags, frame_flags::payload_on_channel) &&
      ((header.type != frame_type::task && header.type != frame_type::result) ||
       header.flags != frame_flags::payload_on_channel || header.payload_length != 0)) {
    wire::protocol_error(std::string("a payload-on-channel mark on a ") + to_string(header.type) +
                         " frame with flags " + wire::hex(flags) + " and " +
                         std::to_string(header.payload_length) + " payload bytes");
  }
  if (header.payload_length > max_payload) {
    wire::protocol_error("payload length " + std::to_string(header.payload_length) +
                         " over limit " + std::to_string(max_payload) + " in a " +
                         to_string(header.type) + " frame (task id " +
                         std::to_string(header.task_id) + ")");
  }
  return header;
}

}  // namespace parallel::detail::ipc
