// libFuzzer target for the frame reader (detail/ipc/frame.hpp, frame_reader.hpp): any bytes, fed
// in any pieces, must come out as exactly the frames that a whole-buffer reference parse finds,
// followed by the ending it predicts: a clean end, a truncation reported by finish(), or a
// protocol violation reported by next() after the frames before it. The reference judges each
// header on its own (a header is valid when encode_header() of its fields gives its very bytes
// back) and requires decode_header() to agree. Anything else aborts: a crash, a sanitizer
// report, an exception other than parallel::error, a frame whose type, task id, flags or payload
// (size or bytes) differ from its bytes in the stream, or that does not re-encode to them.
//
// Input layout (make_corpus.cpp writes seeds in it):
//   byte 0       bits 0-3: k, the number of piece sizes that follow
//                bit 4: the header checksums are recomputed first, frame after frame, so that
//                       mutations of the other fields reach the checks behind the checksum
//                bit 5: a check_headers() callback refuses shutdown frames whose task id is a
//                       multiple of 3
//                bit 6: a payload limit of 64 bytes instead of 1 MiB
//                bit 7: finish() is called before the frames still queued are taken
//   bytes 1..k   piece sizes, used in turn: bits 1-7 = bytes to feed (127: all that is left),
//                bit 0 = take the ready frames with next() after this piece. No sizes: one piece.
//   the rest     the stream
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <parallel/detail/ipc/frame.hpp>
#include <parallel/detail/ipc/frame_reader.hpp>
#include <source_location>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace ipc = parallel::detail::ipc;

constexpr std::size_t large_limit = std::size_t{1} << 20;
constexpr std::size_t small_limit = 64;
constexpr std::string_view error_prefix = "parallel: protocol error: ";

void require(bool ok, const char* what,
             std::source_location where = std::source_location::current()) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_frame: %s:%u: %s\n", where.file_name(),
               static_cast<unsigned>(where.line()), what);
  std::abort();
}

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

struct options {
  std::size_t max_payload = large_limit;
  bool refuse_some_shutdowns = false;
  bool finish_before_draining = false;
};

bool refused_by_check(const ipc::frame_header& header) {
  return header.type == ipc::frame_type::shutdown && header.task_id % 3 == 0;
}

// --- the reference: the whole stream at once, each header judged on its own ------------------

/// The header's fields when it is acceptable, judged without decode_header: every field in
/// range, and encode_header() of the fields reproduces all 32 bytes (magic, version, checksum).
std::optional<ipc::frame_header> valid_header(std::span<const std::byte, ipc::header_size> bytes,
                                              std::size_t max_payload) {
  ipc::frame_header header;
  header.type = static_cast<ipc::frame_type>(ipc::wire::load<std::uint16_t>(bytes.data() + 6));
  const auto flags = ipc::wire::load<std::uint32_t>(bytes.data() + 8);
  header.flags = static_cast<ipc::frame_flags>(flags);
  header.task_id = ipc::wire::load<std::uint64_t>(bytes.data() + 16);
  header.payload_length = ipc::wire::load<std::uint64_t>(bytes.data() + 24);
  if (!ipc::is_known(header.type) || (flags & ~ipc::known_flags_mask) != 0) return std::nullopt;
  // A withdrawn-task mark stands alone, on an empty result frame.
  if (ipc::has_flag(header.flags, ipc::frame_flags::withdrawn) &&
      (header.type != ipc::frame_type::result || flags != 2u || header.payload_length != 0)) {
    return std::nullopt;
  }
  // So does a payload-on-channel mark (a frame in a shared ring whose payload is on the
  // socket), on an empty task or result frame.
  if (ipc::has_flag(header.flags, ipc::frame_flags::payload_on_channel) &&
      ((header.type != ipc::frame_type::task && header.type != ipc::frame_type::result) ||
       flags != 4u || header.payload_length != 0)) {
    return std::nullopt;
  }
  if (header.payload_length > max_payload) return std::nullopt;
  const ipc::header_bytes canonical =
      ipc::encode_header(header.type, header.flags, header.task_id, header.payload_length);
  if (!same_bytes(canonical, bytes)) return std::nullopt;
  return header;
}

enum class ending { clean, truncated, violation };

struct expected_frame {
  std::size_t offset;  // of its header in the stream
  ipc::frame_header header;
};

struct expectation {
  std::vector<expected_frame> frames;
  ending end = ending::clean;
  std::size_t end_offset = 0;  // where the truncated or refused frame starts
};

expectation parse_whole(std::span<const std::byte> stream, const options& opts) {
  expectation out;
  std::size_t at = 0;
  for (;;) {
    out.end_offset = at;
    const std::size_t left = stream.size() - at;
    if (left == 0) {
      out.end = ending::clean;
      return out;
    }
    if (left < ipc::header_size) {
      out.end = ending::truncated;
      return out;
    }
    const auto bytes = stream.subspan(at).first<ipc::header_size>();
    const std::optional<ipc::frame_header> header = valid_header(bytes, opts.max_payload);

    std::optional<ipc::frame_header> decoded;
    try {
      decoded = ipc::decode_header(bytes, opts.max_payload);
    } catch (const parallel::error& e) {
      require(std::string_view{e.what()}.starts_with(error_prefix),
              "decode_header threw an error that is not a protocol error");
    }
    require(decoded.has_value() == header.has_value(),
            "decode_header and the reference disagree on a header");
    if (decoded) {
      require(decoded->type == header->type && decoded->flags == header->flags &&
                  decoded->task_id == header->task_id &&
                  decoded->payload_length == header->payload_length,
              "decode_header returned other fields than the header holds");
    }

    if (!header || (opts.refuse_some_shutdowns && refused_by_check(*header))) {
      out.end = ending::violation;
      return out;
    }
    if (left - ipc::header_size < header->payload_length) {
      out.end = ending::truncated;
      return out;
    }
    out.frames.push_back({at, *header});
    at += ipc::header_size + static_cast<std::size_t>(header->payload_length);
  }
}

/// Rewrites the checksum of each header, following the lengths the headers give, as a forger
/// who knows the format would. Without it, a mutated type, flag or length is almost always
/// refused as a checksum mismatch first.
void repair_checksums(std::span<std::byte> stream) {
  std::size_t at = 0;
  while (stream.size() - at >= ipc::header_size) {
    const auto header = stream.subspan(at).first<ipc::header_size>();
    ipc::wire::store<std::uint32_t>(header.data() + 12, ipc::wire::header_checksum(header));
    const auto length = ipc::wire::load<std::uint64_t>(header.data() + 24);
    if (length > stream.size() - at - ipc::header_size) return;
    at += ipc::header_size + static_cast<std::size_t>(length);
  }
}

// --- the reader, fed in pieces, checked against the reference ----------------------------------

class checked_reader {
 public:
  checked_reader(std::span<const std::byte> stream, const options& opts)
      : stream_(stream),
        opts_(opts),
        expected_(parse_whole(stream, opts)),
        reader_(opts.max_payload) {
    if (opts.refuse_some_shutdowns) {
      reader_.check_headers([](const ipc::frame_header& header) {
        if (refused_by_check(header)) {
          throw parallel::error("parallel: protocol error: fuzz_frame refuses this shutdown");
        }
      });
    }
    require(reader_.max_payload() == opts.max_payload, "max_payload() is not the limit given");
  }

  void feed(std::span<const std::byte> piece) {
    reader_.feed(piece);  // never throws for bad input: an exception here aborts
    fed_ += piece.size();
    require(reader_.reserved_payload_bytes() <= opts_.max_payload,
            "the reader reserved more than the payload limit");
  }

  /// next() until it returns nothing or throws; a throw must be the violation, after every frame.
  void drain() {
    for (;;) {
      std::optional<ipc::frame> frame;
      try {
        frame = reader_.next();
      } catch (const parallel::error& e) {
        check_error(e, "next() threw an error that is not a protocol error");
        return;
      }
      if (!frame) {
        require(got_ == frames_fed(), "a frame whose bytes were all fed was not returned");
        return;
      }
      check_frame(*frame);
    }
  }

  void finish() {
    const bool must_throw = expected_.end != ending::clean;
    bool threw = false;
    try {
      reader_.finish();
    } catch (const parallel::error& e) {
      threw = true;
      require(std::string_view{e.what()}.starts_with(error_prefix),
              "finish() threw an error that is not a protocol error");
      require(std::string_view{e.what()}.ends_with(frame_suffix()),
              "finish()'s error names the wrong offset");
      if (expected_.end == ending::truncated) {
        const std::string have =
            "truncated frame: " + std::to_string(stream_.size() - expected_.end_offset) + " of ";
        require(std::string_view{e.what()}.find(have) != std::string_view::npos,
                "finish()'s truncation message has the wrong byte count");
      }
    }
    require(threw == must_throw, must_throw ? "finish() accepted a truncated or refused stream"
                                            : "finish() refused a stream that ended cleanly");
    finished_ = true;
  }

  /// After the whole stream was fed and finish() called: every frame was returned, and next()
  /// now answers what the ending says.
  void check_end() {
    drain();
    require(got_ == expected_.frames.size(),
            "the reader returned fewer frames than the stream has");
    require(reader_.ready() == 0, "frames left queued after next() returned nothing");
    const bool dead =
        expected_.end == ending::violation || (expected_.end == ending::truncated && finished_);
    bool threw = false;
    try {
      require(!reader_.next().has_value(), "next() returned a frame after the last one");
    } catch (const parallel::error&) {
      threw = true;
    }
    require(threw == dead, dead ? "next() does not report a dead stream"
                                : "next() threw on a stream without a violation");
    if (expected_.end != ending::violation) {
      require(reader_.mid_frame() == (expected_.end == ending::truncated),
              "mid_frame() disagrees with where the stream ended");
    }
  }

 private:
  std::string frame_suffix() const {
    return " (frame at byte " + std::to_string(expected_.end_offset) + " of the stream)";
  }

  /// How many of the expected frames lie entirely in the bytes fed so far.
  std::size_t frames_fed() const {
    std::size_t n = 0;
    while (n < expected_.frames.size() && expected_.frames[n].offset + ipc::header_size +
                                                  expected_.frames[n].header.payload_length <=
                                              fed_) {
      ++n;
    }
    return n;
  }

  void check_error(const parallel::error& e, const char* where) {
    require(std::string_view{e.what()}.starts_with(error_prefix), where);
    const bool dead =
        expected_.end == ending::violation || (expected_.end == ending::truncated && finished_);
    require(dead, "next() threw on a stream without a violation");
    require(got_ == expected_.frames.size(), "next() threw before every intact frame was returned");
    if (expected_.end == ending::violation) {
      require(fed_ >= expected_.end_offset + ipc::header_size,
              "next() reported a violation before the bad header had arrived");
    }
    require(std::string_view{e.what()}.ends_with(frame_suffix()),
            "the violation names the wrong offset");
  }

  void check_frame(const ipc::frame& frame) {
    require(got_ < expected_.frames.size(), "the reader returned a frame the stream does not have");
    const expected_frame& want = expected_.frames[got_++];
    const std::size_t length = static_cast<std::size_t>(want.header.payload_length);
    require(fed_ >= want.offset + ipc::header_size + length,
            "a frame was returned before all of its bytes were fed");
    require(frame.type == want.header.type, "frame type differs from its header");
    require(frame.flags == want.header.flags, "frame flags differ from its header");
    require(frame.task_id == want.header.task_id, "task id differs from its header");
    require(frame.payload.size() == length, "payload size differs from its header");
    require(same_bytes(frame.payload, stream_.subspan(want.offset + ipc::header_size, length)),
            "payload differs from its bytes in the stream");
    // Re-encoded, in both of the encoder's forms, it is its bytes in the stream.
    const auto original = stream_.subspan(want.offset, ipc::header_size + length);
    require(same_bytes(ipc::encode_frame(frame.type, frame.flags, frame.task_id, frame.payload),
                       original),
            "encode_frame does not reproduce the frame's bytes");
    const ipc::header_bytes header =
        ipc::encode_header(frame.type, frame.flags, frame.task_id, frame.payload.size());
    require(same_bytes(header, original.first(ipc::header_size)),
            "encode_header does not reproduce the header's bytes");
  }

  std::span<const std::byte> stream_;
  options opts_;
  expectation expected_;
  ipc::frame_reader reader_;
  std::size_t fed_ = 0;
  std::size_t got_ = 0;
  bool finished_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const std::size_t piece_count = std::min<std::size_t>(control & 0x0Fu, size - 1);
  options opts;
  opts.refuse_some_shutdowns = (control & 0x20u) != 0;
  opts.max_payload = (control & 0x40u) != 0 ? small_limit : large_limit;
  opts.finish_before_draining = (control & 0x80u) != 0;
  const std::span<const std::uint8_t> pieces(data + 1, piece_count);

  // The stream in an exact-size buffer of its own, so that ASan sees a read past its end.
  const std::size_t length = size - 1 - piece_count;
  const std::unique_ptr<std::byte[]> buffer(new std::byte[length]);
  if (length != 0) std::memcpy(buffer.get(), data + 1 + piece_count, length);
  const std::span<std::byte> stream(buffer.get(), length);
  if ((control & 0x10u) != 0) repair_checksums(stream);

  checked_reader reader(stream, opts);
  std::size_t at = 0;
  if (pieces.empty()) {
    reader.feed(stream);
  } else {
    // Sizes are used in turn; a whole round of empty pieces is followed by all that is left.
    std::size_t fed_this_round = 0;
    for (std::size_t i = 0; at < stream.size(); ++i) {
      const std::uint8_t piece = pieces[i % pieces.size()];
      const std::size_t wanted = piece >> 1;
      const bool round_ends = i % pieces.size() == pieces.size() - 1;
      std::size_t n = wanted == 127 ? stream.size() - at : std::min(wanted, stream.size() - at);
      if (round_ends && fed_this_round + n == 0) n = stream.size() - at;
      reader.feed(stream.subspan(at, n));
      at += n;
      fed_this_round = round_ends ? 0 : fed_this_round + n;
      if ((piece & 1u) != 0) reader.drain();
    }
  }
  if (!opts.finish_before_draining) reader.drain();
  reader.finish();
  reader.check_end();
  return 0;
}
