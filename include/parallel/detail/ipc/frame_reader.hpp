// The incremental frame parser: bytes in, in whatever pieces the socket delivered them; whole
// frames out, in order. Everything it reads from the wire is checked before it is trusted, and
// it never holds much more memory than the bytes it was actually given (README.md, "Limits").
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "frame.hpp"

namespace parallel::detail::ipc {

/// Usage, in the transport's receive loop:
///
///     reader.feed(std::span(buffer, n));           // n > 0 bytes just read
///     while (auto f = reader.next()) handle(*f);   // throws parallel::error on a bad frame
///     ...
///     reader.finish();                             // read() returned 0: throws if mid-frame
///
/// A protocol violation does not throw from feed(): it is reported by next() once the frames
/// before it have been returned, so that results which arrived intact are not lost. After a
/// violation the stream is dead: further bytes are ignored and next() keeps throwing.
class frame_reader {
 public:
  /// A frame's payload buffer starts at most this large, whatever length the header announces,
  /// and then grows (at most doubling, never past the announced length) as bytes arrive.
  static constexpr std::size_t initial_payload_reserve = std::size_t{1} << 20;

  explicit frame_reader(std::size_t max_payload = default_max_payload)
      : max_payload_(max_payload) {}

  /// Runs `check` on each header as soon as it is complete, before its payload is read; an
  /// exception from it is a protocol violation of the stream at that frame.
  void check_headers(std::function<void(const frame_header&)> check) { check_ = std::move(check); }

  void feed(std::span<const std::byte> bytes) {
    while (!bytes.empty() && !failed_) {
      if (!in_payload_) {
        const std::size_t n = std::min(header_size - header_filled_, bytes.size());
        std::copy_n(bytes.begin(), n,
                    header_.begin() + static_cast<std::ptrdiff_t>(header_filled_));
        header_filled_ += n;
        bytes = bytes.subspan(n);
        if (header_filled_ == header_size) start_payload();
      } else {
        const std::size_t n = static_cast<std::size_t>(
            std::min<std::uint64_t>(payload_length_ - current_.payload.size(), bytes.size()));
        append_payload(bytes.first(n));
        bytes = bytes.subspan(n);
        if (current_.payload.size() == payload_length_) complete_frame();
      }
    }
  }

  /// The next complete frame, or nothing until more bytes are fed. Throws parallel::error
  /// ("parallel: protocol error: ...") when the stream reached a frame it cannot accept.
  std::optional<frame> next() {
    if (!ready_.empty()) {
      frame out = std::move(ready_.front());
      ready_.pop_front();
      return out;
    }
    if (failed_) throw parallel::error(error_);
    return std::nullopt;
  }

  /// The peer closed its end. A clean end falls between frames; a partial frame (or an earlier
  /// violation) throws. Frames still queued stay available from next().
  void finish() {
    if (failed_) throw parallel::error(error_);
    if (mid_frame()) {
      const std::uint64_t have = header_filled_ + (in_payload_ ? current_.payload.size() : 0);
      fail("truncated frame: " + std::to_string(have) + " of " +
           (in_payload_ ? std::to_string(header_size + payload_length_) + " bytes"
                        : "at least " + std::to_string(header_size) + " header bytes") +
           " at end of stream");
      throw parallel::error(error_);
    }
  }

  /// True while part of a frame is buffered: an end of stream now would be a truncation.
  bool mid_frame() const noexcept { return header_filled_ != 0; }

  /// Frames parsed and not yet returned by next().
  std::size_t ready() const noexcept { return ready_.size(); }

  /// Bytes of payload buffer reserved for the frame being received (what a forged length could
  /// make the reader hold); never more than max(initial_payload_reserve, 2 * bytes received).
  std::size_t reserved_payload_bytes() const noexcept { return current_.payload.capacity(); }

  std::size_t max_payload() const noexcept { return max_payload_; }

 private:
  void start_payload() {
    frame_header header;
    try {
      header = decode_header(header_, max_payload_);
      if (check_) check_(header);
    } catch (const parallel::error& e) {
      failed_ = true;
      error_ = std::string(e.what()) + " (frame at byte " + std::to_string(frame_offset_) +
               " of the stream)";
      return;
    }
    current_.type = header.type;
    current_.flags = header.flags;
    current_.task_id = header.task_id;
    current_.payload = {};
    payload_length_ = header.payload_length;
    in_payload_ = true;
    if (payload_length_ == 0) {
      complete_frame();
    } else {
      current_.payload.reserve(static_cast<std::size_t>(
          std::min<std::uint64_t>(payload_length_, initial_payload_reserve)));
    }
  }

  // Grows the buffer by hand: std::vector's own growth could double past the announced length,
  // and must never run ahead of the bytes that actually arrived by more than a factor of two.
  void append_payload(std::span<const std::byte> bytes) {
    std::vector<std::byte>& payload = current_.payload;
    const std::size_t needed = payload.size() + bytes.size();
    if (needed > payload.capacity()) {
      const std::uint64_t grown = std::max<std::uint64_t>(needed, 2 * payload.capacity());
      payload.reserve(static_cast<std::size_t>(std::min(grown, payload_length_)));
    }
    payload.insert(payload.end(), bytes.begin(), bytes.end());
  }

  void complete_frame() {
    frame_offset_ += header_size + payload_length_;
    ready_.push_back(std::move(current_));
    current_ = frame{};
    header_filled_ = 0;
    in_payload_ = false;
    payload_length_ = 0;
  }

  void fail(std::string message) {
    failed_ = true;
    error_ = "parallel: protocol error: " + std::move(message) + " (frame at byte " +
             std::to_string(frame_offset_) + " of the stream)";
  }

  std::size_t max_payload_;
  std::function<void(const frame_header&)> check_;
  header_bytes header_{};
  std::size_t header_filled_ = 0;  // nonzero from the first byte of a frame to its last
  bool in_payload_ = false;
  std::uint64_t payload_length_ = 0;  // of the frame being received, checked against the limit
  frame current_;
  std::deque<frame> ready_;
  std::uint64_t frame_offset_ = 0;  // stream position of the frame being received
  bool failed_ = false;
  std::string error_;
};

}  // namespace parallel::detail::ipc
