// The wire format between the caller and its workers (detail/ipc/frame.hpp, frame_reader.hpp):
// frames cross intact whatever pieces the socket cuts them into, and a corrupted, truncated or
// forged stream is a parallel::error naming the protocol violation — never a crash, never a
// huge allocation.
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if !defined(_WIN32)
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <parallel/detail/ipc/arena.hpp>
#include <parallel/detail/ipc/frame.hpp>
#include <parallel/detail/ipc/frame_reader.hpp>
#include <parallel/detail/ipc/payload_cache.hpp>
#include <parallel/detail/ipc/ring.hpp>
#include <random>
#include <semaphore>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

namespace {

namespace ipc = parallel::detail::ipc;
using ipc::frame_flags;
using ipc::frame_type;

const std::vector<frame_type> all_types{
    frame_type::hello,         frame_type::task,     frame_type::result,   frame_type::error,
    frame_type::chunk_request, frame_type::shutdown, frame_type::heartbeat};

std::vector<std::byte> pattern(std::size_t size, unsigned seed) {
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; ++i)
    out[i] = std::byte(static_cast<unsigned char>(i * 131 + seed));
  return out;
}

/// The what() of the parallel::error that `action` throws; fails the test on any other outcome.
std::string protocol_error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const parallel::error& e) {
    return e.what();
  } catch (...) {
    FAIL("threw something other than parallel::error");
  }
  FAIL("did not throw");
  return "";
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}
bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// Feeds all of `stream` in one call, drains, finishes: the frames, or the error thrown.
std::vector<ipc::frame> read_all(std::span<const std::byte> stream,
                                 std::size_t max_payload = ipc::default_max_payload) {
  ipc::frame_reader reader(max_payload);
  reader.feed(stream);
  std::vector<ipc::frame> out;
  while (auto f = reader.next()) out.push_back(std::move(*f));
  reader.finish();
  return out;
}

/// A header whose fields are rewritten after encoding, with the checksum recomputed: what a
/// peer of another build (or a forger who knows the format) would send.
ipc::header_bytes forged_header(std::uint16_t type, std::uint32_t flags, std::uint64_t length) {
  ipc::header_bytes h = ipc::encode_header(frame_type::task, frame_flags::none, 7, 0);
  ipc::wire::store<std::uint16_t>(h.data() + 6, type);
  ipc::wire::store<std::uint32_t>(h.data() + 8, flags);
  ipc::wire::store<std::uint64_t>(h.data() + 24, length);
  ipc::wire::store<std::uint32_t>(h.data() + 12, ipc::wire::header_checksum(h));
  return h;
}

struct sent_frame {
  frame_type type;
  std::uint64_t task_id;
  std::vector<std::byte> payload;
};

/// A stream of `count` frames of every type, payload sizes from 0 to a few KiB.
std::vector<std::byte> many_frames(std::size_t count, std::vector<sent_frame>& sent) {
  std::vector<std::byte> stream;
  std::mt19937 rng(12345);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t size = i % 5 == 0 ? 0 : rng() % (i % 7 == 0 ? 5000 : 64);
    sent.push_back({all_types[i % all_types.size()], i * 0x9E3779B97F4A7C15ull,
                    pattern(size, static_cast<unsigned>(i))});
    ipc::append_frame(stream, sent.back().type, frame_flags::none, sent.back().task_id,
                      sent.back().payload);
  }
  return stream;
}

void require_same(const std::vector<ipc::frame>& got, const std::vector<sent_frame>& sent) {
  REQUIRE(got.size() == sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    REQUIRE(got[i].type == sent[i].type);
    REQUIRE(got[i].flags == frame_flags::none);
    REQUIRE(got[i].task_id == sent[i].task_id);
    REQUIRE(got[i].payload == sent[i].payload);
  }
}

}  // namespace

TEST_CASE("ipc frame: every type round-trips with empty, small and 1 MiB payloads", "[ipc]") {
  for (frame_type type : all_types) {
    for (std::size_t size : {std::size_t{0}, std::size_t{13}, std::size_t{1} << 20}) {
      const auto payload = pattern(size, 3);
      const std::uint64_t task_id = ~std::uint64_t{0} - size;
      const auto stream = ipc::encode_frame(type, frame_flags::none, task_id, payload);
      REQUIRE(stream.size() == ipc::header_size + size);

      // The header alone (for writev) is the first bytes of the whole frame.
      const auto header = ipc::encode_header(type, frame_flags::none, task_id, size);
      REQUIRE(std::equal(header.begin(), header.end(), stream.begin()));

      const auto frames = read_all(stream);
      REQUIRE(frames.size() == 1);
      CHECK(frames[0].type == type);
      CHECK(frames[0].task_id == task_id);
      CHECK(frames[0].payload == payload);
    }
  }
}

TEST_CASE("ipc frame: a stream of frames reads the same in any split", "[ipc]") {
  std::vector<sent_frame> sent;
  const auto stream = many_frames(300, sent);

  SECTION("all at once") { require_same(read_all(stream), sent); }

  SECTION("one byte at a time") {
    ipc::frame_reader reader;
    std::vector<ipc::frame> got;
    for (std::byte b : stream) {
      reader.feed(std::span(&b, 1));
      while (auto f = reader.next()) got.push_back(std::move(*f));
    }
    reader.finish();
    require_same(got, sent);
  }

  SECTION("random split points, next() called between some feeds only") {
    std::mt19937 rng(2024);
    for (int round = 0; round < 20; ++round) {
      ipc::frame_reader reader;
      std::vector<ipc::frame> got;
      std::span<const std::byte> rest(stream);
      while (!rest.empty()) {
        const std::size_t n = std::min<std::size_t>(rest.size(), 1 + rng() % 200);
        reader.feed(rest.first(n));
        rest = rest.subspan(n);
        if (rng() % 3 != 0) {
          while (auto f = reader.next()) got.push_back(std::move(*f));
        }
      }
      reader.finish();
      while (auto f = reader.next()) got.push_back(std::move(*f));
      require_same(got, sent);
    }
  }
}

TEST_CASE("ipc frame: a corrupted header is a protocol error naming what is wrong", "[ipc]") {
  const auto good = ipc::encode_frame(frame_type::result, frame_flags::none, 42, pattern(10, 1));
  const std::string prefix = "parallel: protocol error: ";

  SECTION("bad magic") {
    auto bad = good;
    bad[1] = std::byte{'X'};
    const auto message = protocol_error_of([&] { read_all(bad); });
    CHECK(starts_with(message, prefix + "bad magic"));
    CHECK(contains(message, "frame at byte 0"));
  }
  SECTION("another wire version") {
    auto bad = good;
    bad[4] = std::byte{9};
    CHECK(starts_with(protocol_error_of([&] { read_all(bad); }),
                      prefix + "unsupported wire version 9"));
  }
  SECTION("checksum mismatch: a flipped bit anywhere in the checksummed fields") {
    for (std::size_t at : {6u, 8u, 12u, 16u, 23u, 24u, 31u}) {
      auto bad = good;
      bad[at] ^= std::byte{0x10};
      CHECK(starts_with(protocol_error_of([&] { read_all(bad); }),
                        prefix + "header checksum mismatch"));
    }
  }
  SECTION("unknown frame type (with a valid checksum)") {
    for (std::uint16_t type : {0, 10, 99, 0xFFFF}) {
      const auto h = forged_header(type, 0, 0);
      CHECK(starts_with(protocol_error_of([&] { read_all(h); }),
                        prefix + "unknown frame type " + std::to_string(type)));
    }
  }
  SECTION("unknown flags") {
    const auto h = forged_header(2, 0x80, 0);
    CHECK(starts_with(protocol_error_of([&] { read_all(h); }), prefix + "unknown flags 0x80"));
  }
  SECTION("length over the limit; at the limit is fine") {
    const auto at_limit =
        ipc::encode_frame(frame_type::task, frame_flags::none, 1, pattern(100, 0));
    CHECK(read_all(at_limit, 100).size() == 1);
    const auto over = ipc::encode_frame(frame_type::task, frame_flags::none, 1, pattern(101, 0));
    CHECK(starts_with(protocol_error_of([&] { read_all(over, 100); }),
                      prefix + "payload length 101 over limit 100"));
  }
}

TEST_CASE("ipc frame: every single-byte change to a header is detected", "[ipc]") {
  const auto good =
      ipc::encode_frame(frame_type::task, frame_flags::none, 0x0123456789ABCDEF, pattern(5, 0));
  for (std::size_t at = 0; at < ipc::header_size; ++at) {
    for (unsigned delta = 1; delta < 256; ++delta) {
      auto bad = good;
      bad[at] ^= std::byte(static_cast<unsigned char>(delta));
      ipc::frame_reader reader;
      reader.feed(bad);
      bool threw = false;
      try {
        reader.next();
      } catch (const parallel::error&) {
        threw = true;
      }
      if (!threw) FAIL("byte " << at << " xor " << delta << " went unnoticed");
    }
  }
}

TEST_CASE("ipc frame: frames before a bad one are delivered, then the stream is dead", "[ipc]") {
  auto stream = ipc::encode_frame(frame_type::result, frame_flags::none, 1, pattern(8, 1));
  const std::size_t second = stream.size();
  ipc::append_frame(stream, frame_type::result, frame_flags::none, 2, pattern(8, 2));
  stream[second] = std::byte{0};  // the second frame's magic

  ipc::frame_reader reader;
  reader.feed(stream);
  const auto first = reader.next();
  REQUIRE(first);
  CHECK(first->task_id == 1);
  const auto message = protocol_error_of([&] { reader.next(); });
  CHECK(contains(message, "bad magic"));
  CHECK(contains(message, "frame at byte " + std::to_string(second)));
  // A good frame after the violation is not parsed: the stream has lost sync.
  reader.feed(ipc::encode_frame(frame_type::heartbeat, frame_flags::none, 3, {}));
  CHECK(protocol_error_of([&] { reader.next(); }) == message);
  CHECK(protocol_error_of([&] { reader.finish(); }) == message);
}

TEST_CASE("ipc frame: end of stream inside a frame throws, between frames it does not", "[ipc]") {
  auto stream = ipc::encode_frame(frame_type::task, frame_flags::none, 5, pattern(40, 1));
  const std::size_t boundary = stream.size();
  ipc::append_frame(stream, frame_type::shutdown, frame_flags::none, 6, {});
  ipc::append_frame(stream, frame_type::result, frame_flags::none, 7, pattern(3, 2));

  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    ipc::frame_reader reader;
    reader.feed(std::span(stream).first(cut));
    std::size_t frames = 0;
    while (reader.next()) ++frames;
    const bool between_frames =
        cut == 0 || cut == boundary || cut == boundary + ipc::header_size || cut == stream.size();
    INFO("stream cut after " << cut << " of " << stream.size() << " bytes");
    CHECK(frames == std::size_t{cut >= boundary} + std::size_t{cut >= boundary + ipc::header_size} +
                        std::size_t{cut == stream.size()});
    if (between_frames) {
      CHECK_NOTHROW(reader.finish());
    } else {
      const auto message = protocol_error_of([&] { reader.finish(); });
      CHECK(starts_with(message, "parallel: protocol error: truncated frame: "));
      CHECK(contains(message, "at end of stream"));
    }
  }
  // The message counts the bytes: 10 of the first frame's 72.
  ipc::frame_reader reader;
  reader.feed(std::span(stream).first(10));
  CHECK(starts_with(protocol_error_of([&] { reader.finish(); }),
                    "parallel: protocol error: truncated frame: 10 of at least 32 header bytes"));
  ipc::frame_reader in_payload;
  in_payload.feed(std::span(stream).first(50));
  CHECK(starts_with(protocol_error_of([&] { in_payload.finish(); }),
                    "parallel: protocol error: truncated frame: 50 of 72 bytes at end of stream"));
}

TEST_CASE("ipc frame: a forged length allocates nothing it has not received", "[ipc]") {
  SECTION("2^62 bytes: refused as soon as the header is complete") {
    const auto h =
        forged_header(static_cast<std::uint16_t>(frame_type::result), 0, std::uint64_t{1} << 62);
    ipc::frame_reader reader;
    reader.feed(h);
    CHECK(reader.reserved_payload_bytes() == 0);
    CHECK(starts_with(protocol_error_of([&] { reader.next(); }),
                      "parallel: protocol error: payload length 4611686018427387904 over limit"));
  }
  SECTION("512 MiB, under the limit: the buffer follows the bytes that arrive") {
    const std::uint64_t announced = std::uint64_t{512} << 20;
    const auto h = forged_header(static_cast<std::uint16_t>(frame_type::result), 0, announced);
    ipc::frame_reader reader;
    reader.feed(h);
    CHECK(reader.reserved_payload_bytes() <= ipc::frame_reader::initial_payload_reserve);
    const auto piece = pattern(64 << 10, 0);
    std::size_t received = 0;
    for (int i = 0; i < 80; ++i) {  // 5 MiB of the 512
      reader.feed(piece);
      received += piece.size();
      REQUIRE(reader.reserved_payload_bytes() <=
              std::max(ipc::frame_reader::initial_payload_reserve, 2 * received));
      REQUIRE(!reader.next());
    }
    CHECK(contains(protocol_error_of([&] { reader.finish(); }),
                   std::to_string(ipc::header_size + received) + " of " +
                       std::to_string(ipc::header_size + announced) + " bytes"));
  }
  SECTION("a payload's buffer never exceeds its announced length") {
    const auto payload = pattern((1 << 20) + 4097, 9);
    const auto stream = ipc::encode_frame(frame_type::result, frame_flags::none, 1, payload);
    ipc::frame_reader reader;
    for (std::size_t at = 0; at < stream.size(); at += 4096) {
      reader.feed(std::span(stream).subspan(at, std::min<std::size_t>(4096, stream.size() - at)));
    }
    const auto f = reader.next();
    REQUIRE(f);
    CHECK(f->payload == payload);
    CHECK(f->payload.capacity() == payload.size());
  }
}

// One arena plays both sides of its result ring: two ends over the same positions.
struct ring_pair {
  ipc::arena shared{ipc::arena::min_ring_bytes};
  ipc::frame_ring writer = shared.result_ring();
  ipc::frame_ring reader = shared.result_ring();
};

bool put(ipc::frame_ring& ring, std::uint64_t id, const std::vector<std::byte>& payload) {
  if (!ring.put(frame_type::result, frame_flags::none, id, payload)) return false;
  ring.commit();
  return true;
}

TEST_CASE("ipc ring: frames are read in place, in order, over many laps", "[ipc]") {
  ring_pair p;
  REQUIRE(p.writer.usable());
  const std::uint64_t size = p.writer.size();
  CHECK(size % ipc::frame_ring::align == 0);
  CHECK_FALSE(p.reader.ready());
  CHECK_FALSE(p.reader.peek(ipc::default_max_payload));

  // Too large ever (more than half the ring): refused, for the socket.
  CHECK_FALSE(p.writer.takes(size / 2));
  CHECK_FALSE(put(p.writer, 1, std::vector<std::byte>(size / 2)));

  // Two frames unread take most of the ring; a third does not fit until the first is read.
  const auto a = pattern(size * 2 / 5, 1);
  const auto b = pattern(size * 2 / 5, 2);
  REQUIRE(put(p.writer, 1, a));
  REQUIRE(put(p.writer, 2, b));
  CHECK_FALSE(put(p.writer, 3, a));
  auto first = p.reader.peek(ipc::default_max_payload);
  REQUIRE(first);
  CHECK(first->header.task_id == 1);
  CHECK(std::equal(first->payload.begin(), first->payload.end(), a.begin(), a.end()));
  p.reader.consume(*first);
  REQUIRE(put(p.writer, 3, a));  // at the start of the next lap: the end had no room for it
  for (std::uint64_t id = 2; id <= 3; ++id) {
    auto r = p.reader.peek(ipc::default_max_payload);
    REQUIRE(r);
    CHECK(r->header.task_id == id);
    const auto& expected = id == 2 ? b : a;
    CHECK(std::equal(r->payload.begin(), r->payload.end(), expected.begin(), expected.end()));
    p.reader.consume(*r);
  }
  CHECK_FALSE(p.reader.ready());

  // A ring found empty starts again at its beginning (once a few frames like the next fit
  // before the mark that says so), so frames land in its first few pages: they stay warm.
  const std::byte* where = nullptr;
  for (std::uint64_t i = 0; i < 200; ++i) {
    const auto payload = pattern(100 + i * 997 % 5000, static_cast<unsigned>(i));
    REQUIRE(put(p.writer, 10 + i, payload));
    auto r = p.reader.peek(ipc::default_max_payload);
    REQUIRE(r);
    CHECK(r->header.task_id == 10 + i);
    CHECK(std::equal(r->payload.begin(), r->payload.end(), payload.begin(), payload.end()));
    if (where == nullptr) where = r->payload.data();
    CHECK(r->payload.data() >= where);
    CHECK(r->payload.data() <
          where + (ipc::frame_ring::restart_room + 2) * ipc::frame_ring::record_bytes(5100));
    p.reader.consume(*r);
  }
}

TEST_CASE("ipc ring: a ring found empty has room for the next frames before its reader looks",
          "[ipc]") {
  // A worker runs its task while the caller writes the next ones: the reader does not look at
  // the ring meanwhile. Each frame here is an eighth of the ring.
  ring_pair p;
  const auto frame = pattern(p.writer.size() / 8 - ipc::header_size, 7);
  REQUIRE(put(p.writer, 1, frame));
  auto first = p.reader.peek(ipc::default_max_payload);
  REQUIRE(first);
  p.reader.consume(*first);
  // The ring is empty, its writer an eighth in: the next three frames all fit, unread.
  for (std::uint64_t id = 2; id <= 4; ++id) REQUIRE(put(p.writer, id, frame));
  for (std::uint64_t id = 2; id <= 4; ++id) {
    auto r = p.reader.peek(ipc::default_max_payload);
    REQUIRE(r);
    CHECK(r->header.task_id == id);
    CHECK(std::equal(r->payload.begin(), r->payload.end(), frame.begin(), frame.end()));
    p.reader.consume(*r);
  }
}

#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
TEST_CASE("ipc ring: a writer maps a fresh ring in ahead of itself, not a page at a fault",
          "[ipc]") {
  ring_pair p;  // fresh shared memory: not one page of the ring touched yet
  const auto frame = pattern(4000, 3);
  const std::uint64_t frames =
      std::min<std::uint64_t>(64, p.writer.size() / 2 / ipc::frame_ring::record_bytes(4000));
  const test_support::trapped_page_faults faults;
  for (std::uint64_t id = 0; id < frames; ++id)
    REQUIRE(p.writer.put(frame_type::result, frame_flags::none, id, frame));
  const long taken = faults.count();
  p.writer.commit();
  for (std::uint64_t id = 0; id < frames; ++id) {
    auto r = p.reader.peek(ipc::default_max_payload);
    REQUIRE(r);
    CHECK(r->header.task_id == id);
    CHECK(std::equal(r->payload.begin(), r->payload.end(), frame.begin(), frame.end()));
    p.reader.consume(*r);
  }
  // A page a frame: as many faults as frames if each page faulted in at its first write.
  INFO(taken << " page faults writing " << frames << " frames of a page");
  if (!faults.available()) WARN("perf events are refused here: the faults are not counted");
  if (faults.available() && !test_support::under_sanitizer)
    CHECK(taken < static_cast<long>(frames) / 4);
}
#endif

#if !defined(_WIN32)  // per-call fork, which keeps arenas, is POSIX only
TEST_CASE("ipc arena: a kept arena comes back as new, its memory past the kept bytes given back",
          "[ipc]") {
  auto& cache = ipc::arena_cache::here();
  cache.clear();
  constexpr std::size_t ring_bytes = std::size_t{16} << 20;
  auto made = std::make_unique<ipc::arena>(ring_bytes);
  CHECK_FALSE(made->reusable_for(ring_bytes));  // a spawned worker would still need its handle
  made->close_fd();
  REQUIRE(made->reusable_for(ring_bytes));
  ipc::frame_ring writer = made->result_ring();
  const auto frame = pattern(std::size_t{1} << 20, 5);
  for (std::uint64_t id = 1; id <= 3; ++id) REQUIRE(put(writer, id, frame));  // 3 MiB in
  const std::byte* past_kept = made->result_ring_start() + ipc::arena_cache::kept_bytes + 4096;
  CHECK(*past_kept != std::byte{0});
  const ipc::arena* const where = made.get();
  cache.give(std::move(made));
  CHECK(cache.size() == 1);
  CHECK(cache.take(ring_bytes / 2) == nullptr);  // rings of another size: not this one
  auto again = cache.take(ring_bytes);
  REQUIRE(again.get() == where);
  CHECK(cache.size() == 0);
  // Its positions start again: nothing to read, and the writer begins at the ring's start.
  ipc::frame_ring reader = again->result_ring();
  CHECK_FALSE(reader.ready());
  CHECK(*past_kept == std::byte{0});  // given back: zeros, no memory behind them
  ipc::frame_ring next = again->result_ring();
  REQUIRE(put(next, 9, pattern(100, 1)));
  auto r = reader.peek(ipc::default_max_payload);
  REQUIRE(r);
  CHECK(r->header.task_id == 9);
  CHECK(r->payload.data() == again->result_ring_start() + ipc::header_size);
  // A forked child has a cache of its own: it never takes what its parent keeps.
  cache.give(std::move(again));
  REQUIRE(cache.size() == 1);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(ipc::arena_cache::here().take(ring_bytes) == nullptr ? 0 : 1);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK(cache.size() == 1);
  cache.clear();
}
#endif

TEST_CASE("ipc ring: a reader that keeps up keeps the writer in the warm part of the ring",
          "[ipc]") {
  ring_pair p;
  const std::uint64_t size = p.writer.size();
  const std::uint64_t warm = p.writer.warm_bytes();
  CHECK(warm > 0);
  CHECK(warm <= size / 4);
  CHECK(warm % ipc::frame_ring::align == 0);

  // Two frames in flight at a time, each read after the next is written: the ring is never
  // empty when the writer comes, yet the writer goes back to the start whenever it is past the
  // warm part and the reader has given the start back. Without that, it would go round the
  // whole ring (first touches of every page, on both sides).
  const std::size_t length = static_cast<std::size_t>(warm / 5);
  const std::byte* base = nullptr;
  const std::byte* highest = nullptr;
  REQUIRE(put(p.writer, 1, pattern(length, 1)));
  for (std::uint64_t id = 2; id < 200; ++id) {
    REQUIRE(put(p.writer, id, pattern(length, static_cast<unsigned>(id))));
    auto r = p.reader.peek(ipc::default_max_payload);
    REQUIRE(r);
    CHECK(r->header.task_id == id - 1);
    const auto expected = pattern(length, static_cast<unsigned>(id - 1));
    CHECK(std::equal(r->payload.begin(), r->payload.end(), expected.begin(), expected.end()));
    if (base == nullptr) base = r->payload.data() - ipc::header_size;
    highest = std::max(highest, r->payload.data());
    p.reader.consume(*r);
  }
  CHECK(highest < base + warm + 2 * ipc::frame_ring::record_bytes(length));
}

TEST_CASE("ipc ring: a frame reserved and taken back before its commit is never seen", "[ipc]") {
  ring_pair p;
  REQUIRE(put(p.writer, 1, pattern(100, 1)));
  const std::uint64_t end = p.writer.reserved_end();
  std::byte* at = p.writer.reserve(frame_type::result, frame_flags::none, 2, 5000);
  REQUIRE(at != nullptr);
  std::fill(at, at + 5000, std::byte{0xEE});
  p.writer.unreserve(end);
  CHECK(p.writer.reserved_end() == end);
  REQUIRE(put(p.writer, 3, pattern(40, 3)));
  for (std::uint64_t id : {1, 3}) {
    auto r = p.reader.peek(ipc::default_max_payload);
    REQUIRE(r);
    CHECK(r->header.task_id == id);
    const auto expected = pattern(id == 1 ? 100 : 40, static_cast<unsigned>(id));
    CHECK(std::equal(r->payload.begin(), r->payload.end(), expected.begin(), expected.end()));
    p.reader.consume(*r);
  }
  CHECK_FALSE(p.reader.peek(ipc::default_max_payload));
}

TEST_CASE("ipc ring: a forged header or length in the ring is a protocol error", "[ipc]") {
  ring_pair p;
  const std::string prefix = "parallel: protocol error: ";
  REQUIRE(put(p.writer, 1, pattern(64, 1)));
  // The payload length says more than was published.
  auto r = p.reader.peek(ipc::default_max_payload);
  REQUIRE(r);
  auto* header = const_cast<std::byte*>(r->payload.data()) - ipc::header_size;
  const auto forged =
      ipc::encode_header(frame_type::result, frame_flags::none, 1, std::uint64_t{1} << 20);
  std::memcpy(header, forged.data(), forged.size());
  CHECK(protocol_error_of([&] {
          (void)p.reader.peek(ipc::default_max_payload);
        }).find("announces 1048576 payload bytes") != std::string::npos);
  // A scribbled header.
  header[5] = std::byte{0x7F};
  CHECK(starts_with(protocol_error_of([&] { (void)p.reader.peek(ipc::default_max_payload); }),
                    prefix));
}

TEST_CASE("ipc ring: a payload-on-channel mark stands alone on an empty task or result frame",
          "[ipc]") {
  const std::string prefix = "parallel: protocol error: a payload-on-channel mark";
  const auto mark = ipc::encode_frame(frame_type::task, frame_flags::payload_on_channel, 4, {});
  const auto frames = read_all(mark);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].flags == frame_flags::payload_on_channel);
  CHECK(starts_with(protocol_error_of([&] { read_all(forged_header(1, 4, 0)); }), prefix));
  CHECK(starts_with(protocol_error_of([&] { read_all(forged_header(3, 4, 8)); }), prefix));
  CHECK(starts_with(protocol_error_of([&] { read_all(forged_header(4, 4, 0)); }), prefix));
}

TEST_CASE("ipc ring: a writer and a reader thread pass frames intact, and no doorbell is lost",
          "[ipc]") {
  // The reader sleeps (a semaphore stands for its socket) whenever the ring is empty after a
  // short spin; the writer rings only when it sees it asleep (ring.hpp's doorbell). A lost
  // wake-up would leave the reader asleep with frames waiting: the bounded wait catches it.
  ring_pair p;
  ipc::doorbell bell;
  std::counting_semaphore<> socket(0);
  constexpr std::uint64_t count = 20000;
  std::atomic<std::uint64_t> rings{0};
  std::string failure;
  std::thread reader([&] {
    std::uint64_t next = 0;
    while (next < count) {
      auto r = p.reader.peek(ipc::default_max_payload);
      if (r) {
        const auto expected =
            pattern(static_cast<std::size_t>(next * 7919 % 3000), static_cast<unsigned>(next));
        if (r->header.task_id != next ||
            !std::equal(r->payload.begin(), r->payload.end(), expected.begin(), expected.end())) {
          failure = "frame " + std::to_string(next) + " arrived changed";
          return;
        }
        p.reader.consume(*r);
        ++next;
        continue;
      }
      if (parallel::detail::spin_until([&] { return p.reader.ready(); }, 2'000)) continue;
      bell.sleeping();
      if (p.reader.ready()) {
        bell.awake();
        continue;
      }
      if (!socket.try_acquire_for(std::chrono::seconds(10))) {
        failure = "the reader slept with frame " + std::to_string(next) + " unread: a lost bell";
        return;
      }
      bell.awake();
    }
  });
  std::mt19937 random(7);
  for (std::uint64_t i = 0; i < count && failure.empty(); ++i) {
    if (i % 1000 == 999) {
      // Now and then the reader is let fall asleep for sure, so the bell is rung at least that
      // often whatever the two threads' speeds (a loaded machine, a sanitizer).
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (bell.asleep.load() == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    const auto payload =
        pattern(static_cast<std::size_t>(i * 7919 % 3000), static_cast<unsigned>(i));
    while (!put(p.writer, i, payload)) std::this_thread::yield();
    if (bell.must_ring()) {
      rings.fetch_add(1, std::memory_order_relaxed);
      socket.release();
    }
    if (random() % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  reader.join();
  CHECK(failure.empty());
  INFO("doorbells rung: " << rings.load());
  CHECK(rings.load() > 0);  // the writer's waits let the reader fall asleep
}

TEST_CASE("ipc frame: a withdrawn-task mark stands alone on an empty result frame", "[ipc]") {
  const std::string prefix = "parallel: protocol error: a withdrawn-task mark";
  const auto mark = ipc::encode_frame(frame_type::result, frame_flags::withdrawn, 9, {});
  const auto frames = read_all(mark);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].flags == frame_flags::withdrawn);
  CHECK(frames[0].task_id == 9);
  // On another frame, with a payload, or with another flag: refused.
  CHECK(starts_with(protocol_error_of([&] { read_all(forged_header(1, 2, 0)); }), prefix));
  CHECK(starts_with(protocol_error_of([&] { read_all(forged_header(2, 2, 8)); }), prefix));
  CHECK(starts_with(protocol_error_of([&] { read_all(forged_header(3, 6, 0)); }), prefix));
}

TEST_CASE("ipc arena: a task is taken by the worker or withdrawn by the caller, never both",
          "[ipc]") {
  ipc::arena shared(0);
  ipc::control_block& c = shared.control();
  // Offered, then taken: it can no longer be withdrawn.
  c.offer(1);
  CHECK(c.take(1));
  CHECK_FALSE(c.withdraw(1));
  // Offered, then withdrawn: the worker skips it, and a second withdrawal is refused.
  c.offer(2);
  CHECK(c.withdraw(2));
  CHECK_FALSE(c.take(2));
  CHECK_FALSE(c.withdraw(2));
  // The same place a lap later holds a new task: the old word does not match it.
  const std::uint64_t later = 2 + ipc::control_block::claim_slots;
  CHECK_FALSE(c.withdraw(later));  // not offered yet
  c.offer(later);
  CHECK(c.withdraw(later));
  // A task never offered (a caller without claims, as MPI's) is run.
  CHECK(c.take(5));
  // Two threads race for each of many tasks: exactly one wins each.
  constexpr std::uint64_t tasks = 20000;
  constexpr std::uint64_t from = 1000;
  std::uint64_t taken = 0;
  std::atomic<std::uint64_t> offered{from};  // tasks below this are offered
  std::atomic<std::uint64_t> reached{from};  // the worker is past tasks below this
  std::thread worker([&] {
    for (std::uint64_t seq = from; seq < from + tasks; ++seq) {
      while (offered.load(std::memory_order_acquire) <= seq) std::this_thread::yield();
      if (c.take(seq)) ++taken;
      reached.store(seq + 1, std::memory_order_release);
    }
  });
  std::uint64_t withdrawn = 0;
  for (std::uint64_t seq = from; seq < from + tasks; ++seq) {
    // At most claim_slots - 1 tasks ahead of the worker, as the engine keeps them.
    while (seq - reached.load(std::memory_order_acquire) + 1 >= ipc::control_block::claim_slots)
      std::this_thread::yield();
    c.offer(seq);
    offered.store(seq + 1, std::memory_order_release);
    if (seq % 2 == 0 && c.withdraw(seq)) ++withdrawn;
  }
  worker.join();
  CHECK(taken + withdrawn == tasks);
  CHECK(taken >= tasks / 2);  // the odd ones were never withdrawn
}

TEST_CASE("ipc frame: the retired flag bit 0 is refused as unknown", "[ipc]") {
  // It once said "the payload is in shared memory"; a reader that took it now would read a
  // payload the writer never meant.
  for (const auto type : {frame_type::task, frame_type::result}) {
    const auto h = forged_header(static_cast<std::uint16_t>(type), 1, 16);
    CHECK(starts_with(protocol_error_of([&] { read_all(h); }),
                      "parallel: protocol error: unknown flags 0x1"));
  }
}

TEST_CASE("ipc payload cache: finished jobs' buffers are handed to the next jobs, within bounds",
          "[ipc]") {
  ipc::payload_cache cache;
  CHECK(cache.take().capacity() == 0);  // nothing given yet: a new, empty buffer

  // A buffer given back comes back empty, with its memory.
  std::vector<std::byte> a(64 << 10, std::byte{1});
  const std::byte* memory = a.data();
  cache.give(std::move(a));
  CHECK(cache.held_bytes() >= (64 << 10));
  std::vector<std::byte> again = cache.take();
  CHECK(again.empty());
  CHECK(again.capacity() >= (64 << 10));
  CHECK(again.data() == memory);
  CHECK(cache.held_bytes() == 0);

  // The largest comes first.
  cache.give(std::vector<std::byte>(16 << 10));
  cache.give(std::vector<std::byte>(256 << 10));
  cache.give(std::vector<std::byte>(32 << 10));
  CHECK(cache.take().capacity() >= (256 << 10));
  CHECK(cache.take().capacity() >= (32 << 10));
  CHECK(cache.take().capacity() >= (16 << 10));
  CHECK(cache.take().capacity() == 0);

  // Too small to matter, or too large to hold: freed.
  cache.give(std::vector<std::byte>(ipc::payload_cache::min_buffer_bytes - 1));
  cache.give(std::vector<std::byte>(ipc::payload_cache::max_buffer_bytes + 1));
  CHECK(cache.held_bytes() == 0);

  // Never more than max_total_bytes held, nor more than max_buffers buffers.
  for (int i = 0; i < 64; ++i)
    cache.give(std::vector<std::byte>(ipc::payload_cache::max_buffer_bytes));
  CHECK(cache.held_bytes() <= ipc::payload_cache::max_total_bytes);
  std::size_t count = 0;
  while (cache.take().capacity() != 0) ++count;
  CHECK(count <= ipc::payload_cache::max_buffers);
  CHECK(count == ipc::payload_cache::max_total_bytes / ipc::payload_cache::max_buffer_bytes);
  for (int i = 0; i < 64; ++i)
    cache.give(std::vector<std::byte>(ipc::payload_cache::min_buffer_bytes));
  count = 0;
  while (cache.take().capacity() != 0) ++count;
  CHECK(count == ipc::payload_cache::max_buffers);
}

TEST_CASE("ipc payload cache: threads that give and take at once lose no buffer and share none",
          "[ipc]") {
  ipc::payload_cache cache;
  std::atomic<bool> shared{false};
  auto churn = [&](std::byte mark) {
    for (int i = 0; i < 2000; ++i) {
      std::vector<std::byte> b = cache.take();
      b.assign(8 << 10, mark);
      if (std::any_of(b.begin(), b.end(), [mark](std::byte x) { return x != mark; })) shared = true;
      cache.give(std::move(b));
    }
  };
  std::thread t1(churn, std::byte{1});
  std::thread t2(churn, std::byte{2});
  churn(std::byte{3});
  t1.join();
  t2.join();
  CHECK_FALSE(shared);
  CHECK(cache.held_bytes() <= ipc::payload_cache::max_total_bytes);
}

TEST_CASE("ipc frame: random corruption yields frames or parallel::error, nothing else", "[ipc]") {
  std::vector<sent_frame> sent;
  const auto good = many_frames(40, sent);
  std::mt19937 rng(777);
  int errors = 0;
  for (int iteration = 0; iteration < 3000; ++iteration) {
    auto stream = good;
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations; ++m) {
      const std::size_t at = rng() % stream.size();
      switch (rng() % 4) {
        case 0:  // overwrite a byte
        case 1:
          stream[at] = std::byte(static_cast<unsigned char>(rng()));
          break;
        case 2:  // drop a byte
          stream.erase(stream.begin() + static_cast<std::ptrdiff_t>(at));
          break;
        default:  // cut the stream
          stream.resize(at);
          break;
      }
      if (stream.empty()) break;
    }
    ipc::frame_reader reader(1 << 16);
    std::size_t payload_bytes = 0;
    try {
      std::span<const std::byte> rest(stream);
      while (!rest.empty()) {
        const std::size_t n = std::min<std::size_t>(rest.size(), 1 + rng() % 300);
        reader.feed(rest.first(n));
        rest = rest.subspan(n);
        while (auto f = reader.next()) payload_bytes += f->payload.size();
        REQUIRE(reader.reserved_payload_bytes() <= ipc::frame_reader::initial_payload_reserve);
      }
      reader.finish();
    } catch (const parallel::error& e) {
      REQUIRE(starts_with(e.what(), "parallel: protocol error: "));
      ++errors;
    }
    REQUIRE(payload_bytes <= stream.size());
  }
  // Almost every mutation is caught; an overwritten payload byte alone is not the format's
  // business (the socket does not flip bits; the header checksum guards framing).
  CHECK(errors > 2000);
}
