// The public core of the codec (codec.hpp is what a program includes): the byte streams a codec
// writes and reads (parallel::encoder, parallel::decoder), parallel::codec<T> as declared, the
// parallel::transferable<T> concept, and the codec of types that cross as their bytes. The
// specialisations come after it: cereal.hpp, fallback.hpp, std_types.hpp, aggregate.hpp.
#pragma once

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "bitwise.hpp"

namespace parallel {

class encoder;
class decoder;

/// How a T crosses a process boundary. Built in: arithmetic types, enums, std::string, vector,
/// array, deque, list, pair, tuple, optional, variant, map, unordered_map, set, unordered_set,
/// unique_ptr, chrono::duration and time_point, complex, bitset, filesystem::path, trivially
/// copyable aggregates of numbers (not of pointers, as their bytes), any other aggregate whose
/// members all cross (member by member; not one with a base class, a C array or a reference
/// member), nested any way,
/// and, when <cereal/cereal.hpp> is available, any type with a cereal serialize (or save/load).
/// Specialise it for your own types, next to their definition:
///
///     template <> struct parallel::codec<point> {
///       static void encode(parallel::encoder& e, const point& p) { e.write(p.x); e.write(p.tag); }
///       static point decode(parallel::decoder& d) {
///         auto x = d.read<int>();
///         return point{x, d.read<std::string>()};
///       }
///     };
///
/// decode returns the value, so a type without a default constructor needs nothing special.
/// Read into locals first: the order of evaluation of function arguments is unspecified.
/// \headerfile codec.hpp <parallel/codec.hpp>
template <class T>
struct codec;

/// True when a T can cross a process boundary: a codec<T> exists (built in, specialised, or by
/// cereal) for T and, for containers, for everything they hold.
///
///     static_assert(parallel::transferable<std::vector<std::map<std::string, double>>>);
///     static_assert(!parallel::transferable<int*>);  // an address means nothing elsewhere
///     static_assert(!parallel::transferable<std::thread>);
/// \headerfile codec.hpp <parallel/codec.hpp>
template <class T>
concept transferable = std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T> &&
                       !std::is_array_v<T> && !requires {
  typename codec<T>::parallel_cannot_cross;
}
&&requires(encoder& out, decoder& in, const T& value) {
  codec<T>::encode(out, value);
  { codec<T>::decode(in) } -> std::same_as<T>;
};

namespace detail {

/// The compile-time error for a type that cannot cross: instantiating cannot_cross<T> makes the
/// compiler print "in instantiation of parallel::detail::cannot_cross<T>", which names T.
template <class T>
struct cannot_cross {
  static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T> && !std::is_reference_v<T>,
                "parallel: a pointer or reference cannot cross a process boundary (it is an "
                "address in this process); send the value itself, a std::unique_ptr<T> or a "
                "std::optional<T>");
  static_assert(std::is_pointer_v<T> || std::is_member_pointer_v<T> || std::is_reference_v<T>,
                "parallel: this type cannot cross a process boundary (an aggregate crosses on "
                "its own when every member does and it has no base class, C array or reference "
                "member); specialise parallel::codec<T> with encode/decode, derive "
                "parallel::codec<T> from parallel::bitwise_codec<T> if its bytes are its value, "
                "or give it a cereal serialize() function");
};

/// Instantiated for a T that cannot cross, it instantiates cannot_cross<T>. A variable, not a
/// function body: clang marks a function whose instantiation failed as unusable, and every
/// later call of it (the encoder's, the decoder's) would add an error of its own.
template <class T, bool = transferable<T>>
inline constexpr bool checked_transferable = true;
template <class T>
inline constexpr bool checked_transferable<T, false> = sizeof(cannot_cross<T>) == 0;

/// What every process backend calls on a type it is about to send: nothing when T is
/// transferable, the error above otherwise (once, however many places ask).
template <class T>
constexpr void require_transferable() noexcept {
  static_cast<void>(checked_transferable<T>);
}

[[noreturn]] inline void protocol_error(const std::string& message) {
  throw error("parallel: protocol error: " + message);
}

}  // namespace detail

/// Appends values to a byte buffer, which it owns or borrows.
///
///     parallel::encoder out;
///     out.write(std::vector<int>{1, 2, 3});
///     send(out.bytes());
/// \headerfile codec.hpp <parallel/codec.hpp>
class encoder {
 public:
  encoder() noexcept : out_(&own_) {}
  /// Appends to `out` (kept alive by the caller) instead of a buffer of its own.
  explicit encoder(std::vector<std::byte>& out) noexcept : out_(&out) {}
  encoder(const encoder&) = delete;
  encoder& operator=(const encoder&) = delete;

  void write_bytes(const void* data, std::size_t size) {
    if (size == 0) return;
    const auto* first = static_cast<const std::byte*>(data);
#if defined(__GNUC__) && !defined(__clang__)
    // g++ 12 at -O3 warns (-Wstringop-overflow) on this inlined insert: a known false positive
    // of the vector growth path. resize + memcpy would write large payloads twice.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
    out_->insert(out_->end(), first, first + size);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
  }

  /// A length or count: always 64 bits.
  void write_size(std::size_t size) {
    const auto wide = static_cast<std::uint64_t>(size);
    write_bytes(&wide, sizeof wide);
  }

  template <class T>
  void write(const T& value) {
    detail::require_transferable<T>();
    if constexpr (transferable<T>) codec<T>::encode(*this, value);
  }

  const std::vector<std::byte>& bytes() const noexcept { return *out_; }
  /// The buffer itself, for a caller that patches a length in place.
  std::vector<std::byte>& buffer() noexcept { return *out_; }
  /// Moves the bytes out; the encoder is then empty.
  std::vector<std::byte> take() noexcept { return std::exchange(*out_, {}); }

 private:
  std::vector<std::byte> own_;
  std::vector<std::byte>* out_;
};

/// Reads values back, in the order they were written, from bytes that may be truncated or
/// corrupted: every read is checked and bad input throws parallel::error.
///
///     parallel::decoder in{received_bytes};
///     auto xs = in.read<std::vector<int>>();
///     if (!in.done()) { /* trailing bytes */ }
/// \headerfile codec.hpp <parallel/codec.hpp>
class decoder {
 public:
  explicit decoder(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}

  void read_bytes(void* out, std::size_t size) { read_bytes(out, size, "raw bytes"); }

  /// As read_bytes(out, size); `what` names the value being decoded in the error message.
  void read_bytes(void* out, std::size_t size, std::string_view what) {
    const std::span<const std::byte> source = read_span(size, what);
    if (size != 0) std::memcpy(out, source.data(), size);
  }

  /// The next `size` bytes, in place (valid as long as the decoder's input).
  std::span<const std::byte> read_span(std::size_t size, std::string_view what) {
    if (size > remaining()) {
      detail::protocol_error("the input ends inside " + std::string(what) + " (" +
                             std::to_string(size) + " bytes needed, " +
                             std::to_string(remaining()) + " left): truncated or corrupted");
    }
    const std::span<const std::byte> result = bytes_.subspan(position_, size);
    position_ += size;
    return result;
  }

  /// A length written by encoder::write_size, checked before anything is allocated: `count`
  /// elements of at least `min_element_size` bytes each must fit in what remains.
  std::size_t read_size(std::size_t min_element_size, std::string_view what) {
    std::uint64_t count = 0;
    read_bytes(&count, sizeof count, what);
    const std::size_t unit = min_element_size == 0 ? 1 : min_element_size;
    if (count > remaining() / unit) {
      detail::protocol_error(std::string(what) + " claims " + std::to_string(count) +
                             " elements of at least " + std::to_string(unit) + " bytes, but only " +
                             std::to_string(remaining()) + " bytes are left");
    }
    return static_cast<std::size_t>(count);
  }

  template <class T>
  T read() {
    detail::require_transferable<T>();
    if constexpr (transferable<T>) {
      return codec<T>::decode(*this);
    } else {
      std::terminate();  // unreachable: require_transferable<T> did not compile
    }
  }

  std::size_t remaining() const noexcept { return bytes_.size() - position_; }
  bool done() const noexcept { return position_ == bytes_.size(); }

 private:
  std::span<const std::byte> bytes_;
  std::size_t position_ = 0;
};

/// Opt-in for a trivially copyable type whose bytes are its value but that the library cannot
/// look into (private members, constructors, unions): it then crosses by memcpy.
///
///     class rgb { std::uint8_t r_, g_, b_; public: rgb(int r, int g, int b); /* ... */ };
///     template <> struct parallel::codec<rgb> : parallel::bitwise_codec<rgb> {};
///     // never for a type that holds a pointer: the address would mean nothing in the child
/// \headerfile codec.hpp <parallel/codec.hpp>
template <class T>
struct bitwise_codec {
  static_assert(std::is_trivially_copyable_v<T>,
                "parallel::bitwise_codec<T>: T must be "
                "trivially copyable; write encode/decode");
  static constexpr std::size_t min_size = sizeof(T);

  static void encode(encoder& out, const T& value) { out.write_bytes(&value, sizeof(T)); }
  static T decode(decoder& in) {
    // bit_cast, not `T value; memcpy`: T needs no default constructor.
    alignas(T) std::byte raw[sizeof(T)];
    in.read_bytes(raw, sizeof(T), detail::type_name<T>());
    return std::bit_cast<T>(raw);
  }
};

}  // namespace parallel
