// What the process-backend tests share (test_processes.cpp, test_process_pool.cpp): value types
// that cross a process boundary in each of the ways the codec offers, a counting single-pass
// input, reading a process's memory figures from /proc, and the plain loops results are compared
// with.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bitset>
#include <chrono>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <parallel/parallel.hpp>
#include <ranges>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

#if __has_include(<cereal/cereal.hpp>)
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#define PARALLEL_TESTS_HAVE_CEREAL 1
#endif

namespace process_test_support {

// --- types that cross -----------------------------------------------------------------------

/// A user type with a parallel::codec specialisation (below): not trivially copyable.
struct labelled_point {
  int x = 0;
  int y = 0;
  std::string label;
  friend bool operator==(const labelled_point&, const labelled_point&) = default;
};

/// A trivially copyable aggregate of numbers: crosses as its bytes, with no codec written.
struct sample {
  double value;
  std::int32_t id;
  char grade;
  friend bool operator==(const sample&, const sample&) = default;
};
static_assert(parallel::transferable<sample>);

#if defined(PARALLEL_TESTS_HAVE_CEREAL)
/// A type with a cereal serialize function and no parallel::codec: crosses through cereal.
struct cereal_record {
  std::string name;
  std::vector<int> scores;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(name, scores);
  }
  friend bool operator==(const cereal_record&, const cereal_record&) = default;
};
static_assert(parallel::transferable<cereal_record>);
#endif

}  // namespace process_test_support

template <>
struct parallel::codec<process_test_support::labelled_point> {
  static void encode(parallel::encoder& out, const process_test_support::labelled_point& p) {
    out.write(p.x);
    out.write(p.y);
    out.write(p.label);
  }
  static process_test_support::labelled_point decode(parallel::decoder& in) {
    const auto x = in.read<int>();
    const auto y = in.read<int>();
    auto label = in.read<std::string>();
    return {x, y, std::move(label)};
  }
};
static_assert(parallel::transferable<process_test_support::labelled_point>);

namespace process_test_support {

/// An aggregate of strings, containers and a nested aggregate, with no codec written: crosses
/// member by member.
struct order {
  std::string customer;
  std::vector<std::pair<std::string, int>> lines;
  labelled_point ship_to;  // a member with a codec of its own (specialised above)
  std::map<std::string, double> discounts;
  friend bool operator==(const order&, const order&) = default;
};
static_assert(parallel::transferable<order>);

// --- inputs and the plain loop ----------------------------------------------------------------

inline int triple_plus_one(int x) { return x * 3 + 1; }

inline std::vector<int> numbers(int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(i);
  return out;
}

/// f applied to every item, in a plain loop: the reference every backend must equal.
template <class F, class Range>
auto plain_loop(F&& f, Range&& items) {
  std::vector<std::remove_cvref_t<decltype(f(*std::ranges::begin(items)))>> out;
  for (auto&& x : items) out.push_back(f(x));
  return out;
}

/// Drains a lazy range of results into a vector.
template <class Range>
auto collect(Range&& results) {
  std::vector<std::remove_cvref_t<std::ranges::range_reference_t<Range>>> out;
  for (auto& r : results) out.push_back(std::move(r));
  return out;
}

template <class T>
std::vector<T> sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v;
}

using test_support::single_pass;

// --- /proc ------------------------------------------------------------------------------------

/// A "Name:   1234 kB" figure of /proc/self/status or /proc/self/smaps_rollup, in KiB; -1 when
/// the file or the line is missing.
inline long proc_kib(const char* file, const std::string& name) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) == 0) return std::stol(line.substr(name.size() + 1));
  }
  return -1;
}

inline long resident_kib() { return proc_kib("/proc/self/status", "VmRSS"); }

/// Memory this process wrote since it was forked (or that nobody else maps any more).
inline long private_dirty_kib() { return proc_kib("/proc/self/smaps_rollup", "Private_Dirty"); }

/// The k-th 8-byte word of item i's large result: differs between items and along the bytes.
inline std::uint64_t pattern_word(std::size_t item, std::size_t k) {
  return (static_cast<std::uint64_t>(item) << 40) ^
         (static_cast<std::uint64_t>(k) * 0x9E3779B97F4A7C15u);
}

/// Words of a pattern made at a time: one memcpy or memcmp per block, not per word (a sanitizer
/// checks each call's whole range: per word, 64 MiB took TSan ~10 s).
inline constexpr std::size_t pattern_block_words = 4096;

/// The words [first, first + count) of item i's pattern, into `block`.
inline void pattern_block(std::size_t item, std::size_t first, std::size_t count,
                          std::uint64_t* block) {
  for (std::size_t k = 0; k < count; ++k) block[k] = pattern_word(item, first + k);
}

/// A large result for item i (size a multiple of 8), built a block of words at a time: the tests
/// run unoptimised and under sanitizers too.
inline std::vector<char> patterned(std::size_t item, std::size_t size) {
  std::vector<char> out(size);
  std::uint64_t block[pattern_block_words];
  for (std::size_t k = 0; k < size / 8; k += pattern_block_words) {
    const std::size_t count = std::min(pattern_block_words, size / 8 - k);
    pattern_block(item, k, count, block);
    std::memcpy(out.data() + 8 * k, block, 8 * count);
  }
  return out;
}

/// True when `bytes` is what patterned(item, size) made.
inline bool has_pattern(const std::vector<char>& bytes, std::size_t item, std::size_t size) {
  if (bytes.size() != size) return false;
  std::uint64_t block[pattern_block_words];
  for (std::size_t k = 0; k < size / 8; k += pattern_block_words) {
    const std::size_t count = std::min(pattern_block_words, size / 8 - k);
    pattern_block(item, k, count, block);
    if (std::memcmp(bytes.data() + 8 * k, block, 8 * count) != 0) return false;
  }
  return true;
}

inline int current_pid() { return static_cast<int>(::getpid()); }

// --- values of every kind, through every verb ---------------------------------------------------

/// map, imap and imap_unordered of f over `inputs` equal the plain loop (imap_unordered: the
/// same results in some order). `verbs` is a process_pool or a policy_verbs. A std::list input is
/// not random access, so even a fork-per-call imap sends its items to the workers.
template <class Verbs, class T, class F>
void check_crossing(Verbs& verbs, const std::vector<T>& inputs, F f) {
  const auto expected = plain_loop(f, inputs);
  REQUIRE(verbs.map(f, inputs) == expected);
  // (map over a std::list is covered with ints elsewhere; each extra verb per type costs
  // seconds of compile time in every CI build)
  const std::list<T> listed(inputs.begin(), inputs.end());
  REQUIRE(collect(verbs.imap(f, listed)) == expected);
  const auto unordered = collect(verbs.imap_unordered(f, listed));
  REQUIRE(unordered.size() == expected.size());
  REQUIRE(std::is_permutation(unordered.begin(), unordered.end(), expected.begin()));
}

/// The verbs of a policy, spelled as a pool's members.
template <class Policy>
struct policy_verbs {
  Policy policy;
  template <class F, class Range>
  auto map(F&& f, Range&& items, const parallel::options& opts = {}) {
    return parallel::map(policy, std::forward<F>(f), std::forward<Range>(items), opts);
  }
  template <class F, class Range>
  auto starmap(F&& f, Range&& items, const parallel::options& opts = {}) {
    return parallel::starmap(policy, std::forward<F>(f), std::forward<Range>(items), opts);
  }
  template <class F, class Range>
  auto imap(F&& f, Range&& items, const parallel::options& opts = {}) {
    return parallel::imap(policy, std::forward<F>(f), std::forward<Range>(items), opts);
  }
  template <class F, class Range>
  auto imap_unordered(F&& f, Range&& items, const parallel::options& opts = {}) {
    return parallel::imap_unordered(policy, std::forward<F>(f), std::forward<Range>(items), opts);
  }
};

/// Every kind of value the codec knows, as argument and as result.
template <class Verbs>
void check_every_kind_of_value(Verbs& verbs) {
  {
    INFO("std::string");
    check_crossing(verbs,
                   std::vector<std::string>{"", "a", "h\xc3\xa9llo", std::string(100000, 'x'),
                                            std::string("nul\0inside", 11)},
                   [](const std::string& s) { return s + "!" + std::to_string(s.size()); });
  }
  {
    INFO("std::vector<double>");
    check_crossing(verbs, std::vector<std::vector<double>>{{}, {1.5}, {1, 2, 3, 4.25}},
                   [](const std::vector<double>& v) {
                     std::vector<double> out;
                     double sum = 0;
                     for (double x : v) {
                       out.push_back(2 * x);
                       sum += x;
                     }
                     out.push_back(sum);
                     return out;
                   });
  }
  {
    INFO("std::map<std::string, int>");
    check_crossing(verbs,
                   std::vector<std::map<std::string, int>>{{}, {{"a", 1}}, {{"x", -1}, {"y", 2}}},
                   [](std::map<std::string, int> m) {
                     m["size"] = static_cast<int>(m.size());
                     return m;
                   });
  }
  {
    INFO("std::optional");
    check_crossing(verbs, std::vector<std::optional<int>>{std::nullopt, 0, 42},
                   [](const std::optional<int>& o) -> std::optional<std::string> {
                     if (!o) return std::nullopt;
                     return std::to_string(*o);
                   });
  }
  {
    INFO("std::variant");
    using value = std::variant<int, std::string>;
    check_crossing(verbs, std::vector<value>{value{7}, value{std::string("seven")}, value{-1}},
                   [](const value& v) -> value {
                     if (const int* i = std::get_if<int>(&v)) return std::to_string(*i);
                     return static_cast<int>(std::get<std::string>(v).size());
                   });
  }
  {
    INFO("std::tuple and std::pair");
    using args = std::tuple<int, std::string, double>;
    check_crossing(verbs, std::vector<args>{{1, "one", 1.5}, {2, "", -0.25}}, [](const args& t) {
      return std::pair<std::string, double>{std::get<1>(t) + std::to_string(std::get<0>(t)),
                                            std::get<2>(t) * 2};
    });
  }
  {
    INFO("std::complex, std::filesystem::path, std::list, std::bitset, a time point");
    // One tuple of them: one instantiation of the verbs (compile time), every codec crossing.
    using clock = std::chrono::system_clock;
    using odd = std::tuple<std::complex<double>, std::filesystem::path, std::list<int>,
                           std::bitset<70>, clock::time_point>;
    const clock::time_point now = clock::now();
    check_crossing(
        verbs,
        std::vector<odd>{{{1, 2}, "/tmp/x.txt", {3, 1, 2}, std::bitset<70>{}.set(69), now},
                         {{0, -1}, "", {}, std::bitset<70>{0b1011}, {}}},
        [](const odd& v) {
          std::list<int> sorted = std::get<2>(v);
          sorted.sort();
          return odd{std::get<0>(v) * std::get<0>(v), std::get<1>(v).parent_path(), sorted,
                     ~std::get<3>(v), std::get<4>(v) + std::chrono::hours(1)};
        });
  }
  {
    INFO("an aggregate with no codec written");
    check_crossing(
        verbs,
        std::vector<order>{{"ada", {{"tea", 2}, {"cake", 1}}, {1, 2, "home"}, {{"vip", 0.1}}},
                           {"", {}, {0, 0, ""}, {}}},
        [](const order& o) {
          order back = o;
          back.customer += "!";
          back.lines.emplace_back("receipt", static_cast<int>(o.lines.size()));
          return back;
        });
  }
  {
    INFO("a user type with a parallel::codec specialisation");
    check_crossing(verbs, std::vector<labelled_point>{{1, 2, "a"}, {-3, 4, ""}, {0, 0, "origin"}},
                   [](const labelled_point& p) {
                     return labelled_point{p.y, p.x, p.label + "'"};
                   });
  }
  {
    INFO("a trivially copyable aggregate");
    check_crossing(verbs, std::vector<sample>{{0.5, 1, 'a'}, {-2.0, 2, 'b'}}, [](const sample& s) {
      return sample{s.value * 10, s.id + 100, static_cast<char>(s.grade + 1)};
    });
  }
#if defined(PARALLEL_TESTS_HAVE_CEREAL)
  {
    INFO("a cereal type");
    check_crossing(verbs, std::vector<cereal_record>{{"ann", {1, 2}}, {"", {}}},
                   [](const cereal_record& r) {
                     cereal_record out{r.name + "+", r.scores};
                     out.scores.push_back(static_cast<int>(r.scores.size()));
                     return out;
                   });
  }
#endif
  {
    INFO("bool results");
    const auto third = [](int x) { return x % 3 == 0; };
    REQUIRE(verbs.map(third, numbers(100)) == plain_loop(third, numbers(100)));
    check_crossing(verbs, numbers(100), third);  // imap hands out bool& too
  }
  {
    INFO("a move-only result");
    const auto boxed = [](int x) { return std::make_unique<int>(x * x); };
    const std::vector<std::unique_ptr<int>> mapped = verbs.map(boxed, numbers(50));
    REQUIRE(mapped.size() == 50);
    for (int i = 0; i < 50; ++i) {
      REQUIRE(mapped[static_cast<std::size_t>(i)] != nullptr);
      REQUIRE(*mapped[static_cast<std::size_t>(i)] == i * i);
    }
    int expected = 0;
    for (auto& r : verbs.imap(boxed, numbers(50))) {
      REQUIRE(r != nullptr);
      REQUIRE(*r == expected * expected);
      ++expected;
    }
    REQUIRE(expected == 50);
  }
}

// --- gates across processes ----------------------------------------------------------------

/// A gate a task in a worker process waits at: a file of this test run's own that the test
/// creates to open it. The task first leaves a "started" file, so the test knows it runs. Every
/// wait is bounded (10 s): a failing test ends instead of hanging.
class file_gate {
 public:
  explicit file_gate(const std::string& name)
      : path_((std::filesystem::temp_directory_path() /
               ("parallel-gate." + name + "." + std::to_string(current_pid()) + "." +
                std::to_string(next_number())))
                  .string()) {
    remove_files();
  }
  file_gate(const file_gate&) = delete;
  file_gate& operator=(const file_gate&) = delete;
  ~file_gate() { remove_files(); }

  const std::string& path() const { return path_; }
  void open() const { std::ofstream(path_) << "open\n"; }
  /// True once the task that waits at the gate has started (false after 10 s).
  bool wait_started() const { return appears(path_ + ".started"); }

  /// The task's side: says it started, then waits for the gate; returns `value` when it opened,
  /// -1 after 10 s.
  static int pass(const std::string& path, int value) {
    std::ofstream(path + ".started") << "started\n";
    return appears(path) ? value : -1;
  }

 private:
  static bool appears(const std::string& path) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!std::filesystem::exists(path)) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }
  static int next_number() {
    static std::atomic<int> n{0};
    return n.fetch_add(1);
  }
  void remove_files() const {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
    std::filesystem::remove(path_ + ".started", ignored);
  }

  std::string path_;
};

}  // namespace process_test_support
