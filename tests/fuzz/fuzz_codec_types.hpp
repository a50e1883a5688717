// The types fuzz_codec.cpp decodes: its input's first byte, modulo their number, picks one.
// make_corpus.cpp includes this list too, so that a seed's selector byte names the type its
// bytes were encoded from. Append new types at the end: inserting one renumbers the seeds.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <parallel/codec.hpp>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace fuzz {

// A fixed underlying type makes every value of it a valid enum value. An enum without one (or a
// bool inside an aggregate) crosses as its bytes unchecked, as detail/codec/README.md says, so a
// forged byte would be undefined behaviour by design, not a finding: neither is fuzzed here.
enum class level : std::int16_t { low = -1, mid = 0, high = 7 };

// A trivially copyable aggregate of numbers (crosses as its bytes), with a C array, and without
// padding so that re-encoding it reproduces every byte it was decoded from.
struct sample {
  double score;
  std::int32_t id;
  float weight;
  std::int16_t cells[2][3];
  std::uint16_t flags;
  std::int8_t delta;
  std::uint8_t kind;
};
static_assert(sizeof(sample) == 32, "sample must have no padding");
static_assert(std::is_base_of_v<parallel::bitwise_codec<sample>, parallel::codec<sample>>);

/// What re-encoding a decoded value gives back.
enum class order {
  exact,      // the very bytes it was decoded from
  sorted,     // ordered containers: keys sorted, duplicate keys of map/set dropped; shorter or
              // equal, and stable from then on
  unordered,  // hash containers: the same elements, in an order that may change each time
};

template <class T, order How = order::exact>
struct fuzzed {
  using type = T;
  static constexpr order how = How;
};

using fuzzed_types = std::tuple<
    // numbers, of every width, and the enum
    fuzzed<std::int8_t>, fuzzed<std::uint8_t>, fuzzed<std::int16_t>, fuzzed<std::uint16_t>,
    fuzzed<std::int32_t>, fuzzed<std::uint32_t>, fuzzed<std::int64_t>, fuzzed<std::uint64_t>,
    fuzzed<char>, fuzzed<float>, fuzzed<double>, fuzzed<bool>, fuzzed<level>,
    // strings and sequences (bulk and element by element)
    fuzzed<std::string>, fuzzed<std::u32string>, fuzzed<std::vector<int>>,
    fuzzed<std::vector<double>>, fuzzed<std::vector<std::string>>, fuzzed<std::vector<bool>>,
    fuzzed<std::array<int, 3>>, fuzzed<std::array<std::string, 2>>,
    // products and sums
    fuzzed<std::pair<int, std::string>>, fuzzed<std::tuple<int, std::string, double>>,
    fuzzed<std::optional<std::string>>, fuzzed<std::variant<int, std::string, std::vector<int>>>,
    // associative containers
    fuzzed<std::map<std::string, int>, order::sorted>,
    fuzzed<std::unordered_map<int, std::string>, order::unordered>,
    fuzzed<std::set<int>, order::sorted>, fuzzed<std::multiset<std::string>, order::sorted>,
    fuzzed<std::unordered_set<std::int64_t>, order::unordered>,
    fuzzed<std::multimap<int, std::string>, order::sorted>,
    // owning pointers, durations, aggregates
    fuzzed<std::unique_ptr<int>>, fuzzed<std::unique_ptr<std::string>>,
    fuzzed<std::chrono::milliseconds>, fuzzed<sample>, fuzzed<std::vector<sample>>,
    // nesting, and elements whose encoding is empty (std::monostate)
    fuzzed<std::vector<std::map<std::string, std::vector<int>>>, order::sorted>,
    fuzzed<std::optional<std::variant<std::monostate, level, sample>>>,
    fuzzed<std::vector<std::vector<std::monostate>>>>;

inline constexpr std::size_t fuzzed_count = std::tuple_size_v<fuzzed_types>;
static_assert(fuzzed_count <= 256, "the selector is one byte");

/// The selector byte that makes fuzz_codec decode a T.
template <class T, std::size_t I = 0>
constexpr std::uint8_t selector_of() {
  static_assert(I < fuzzed_count, "T is not in fuzz::fuzzed_types");
  if constexpr (std::is_same_v<typename std::tuple_element_t<I, fuzzed_types>::type, T>) {
    return static_cast<std::uint8_t>(I);
  } else {
    return selector_of<T, I + 1>();
  }
}

}  // namespace fuzz
