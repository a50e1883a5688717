// The cereal bridge: when <cereal/cereal.hpp> can be included, a class with a cereal serialize
// (or save + load, member or free) crosses through cereal's binary archive, as a 64-bit length
// followed by the archive's bytes. Define PARALLEL_NO_CEREAL to leave cereal out.
//
// The archive writes straight into the encoder's buffer and reads straight from the decoder's
// input (two small streambufs, no copy). Cereal's own errors on short input become protocol
// errors. Limit: cereal bounds nothing it reads, so a forged length *inside* a cereal type's
// bytes reaches cereal's allocation unchecked; this bridge only bounds the archive as a whole.
// Types that must be robust against corrupted input should have a parallel::codec instead.
#pragma once

#if !defined(PARALLEL_NO_CEREAL) && __has_include(<cereal/cereal.hpp>)
#define PARALLEL_HAS_CEREAL 1
#include <cereal/archives/binary.hpp>
#include <cereal/cereal.hpp>
#endif

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <istream>
#include <new>
#include <ostream>
#include <span>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <type_traits>
#include <vector>

#include "core.hpp"

namespace parallel::detail {

#if defined(PARALLEL_HAS_CEREAL)

/// A class cereal can both save and load with its binary archive, and that load can fill
/// (cereal loads into an existing object).
template <class T>
concept cereal_type = std::is_class_v<T> && std::default_initializable<T> &&
    cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value &&
    cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value;

/// An output streambuf that appends to a byte vector.
class byte_sink : public std::streambuf {
 public:
  explicit byte_sink(std::vector<std::byte>& out) noexcept : out_(out) {}

 protected:
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      out_.push_back(static_cast<std::byte>(traits_type::to_char_type(c)));
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* data, std::streamsize size) override {
    const auto* first = reinterpret_cast<const std::byte*>(data);
    out_.insert(out_.end(), first, first + size);
    return size;
  }

 private:
  std::vector<std::byte>& out_;
};

/// An input streambuf over bytes it does not own. The get area is never written through: the
/// const_cast only satisfies setg's signature.
class byte_source : public std::streambuf {
 public:
  explicit byte_source(std::span<const std::byte> bytes) noexcept {
    char* first = const_cast<char*>(reinterpret_cast<const char*>(bytes.data()));
    setg(first, first, first + bytes.size());
  }
};

template <class T>
struct cereal_codec {
  static constexpr std::size_t min_size = sizeof(std::uint64_t);

  static void encode(encoder& out, const T& value) {
    std::vector<std::byte>& buffer = out.buffer();
    const std::size_t length_at = buffer.size();
    out.write_size(0);  // patched below, once the archive's size is known
    {
      byte_sink sink{buffer};
      std::ostream stream{&sink};
      cereal::BinaryOutputArchive archive{stream};
      archive(value);
    }
    const std::uint64_t length = buffer.size() - length_at - sizeof(std::uint64_t);
    std::memcpy(buffer.data() + length_at, &length, sizeof length);
  }

  static T decode(decoder& in) {
    const std::size_t length = in.read_size(1, type_name<T>());
    byte_source source{in.read_span(length, type_name<T>())};
    std::istream stream{&source};
    T value;
    try {
      cereal::BinaryInputArchive archive{stream};
      archive(value);
    } catch (const cereal::Exception& e) {
      protocol_error("cereal could not decode " + std::string(type_name<T>()) + ": " + e.what());
    } catch (const std::length_error& e) {
      protocol_error("cereal could not decode " + std::string(type_name<T>()) + ": " + e.what());
    } catch (const std::bad_alloc&) {
      protocol_error("cereal could not decode " + std::string(type_name<T>()) +
                     ": a length in its bytes asked for more memory than there is");
    }
    return value;
  }
};

#else

template <class T>
concept cereal_type = false;

template <class T>
struct cereal_codec {};

#endif

}  // namespace parallel::detail
