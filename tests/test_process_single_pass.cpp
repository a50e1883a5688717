// imap over processes reads a single-pass input exactly once, in order: an input whose
// iterators all share one position (like std::istream_view) loses no item and reads nothing
// past its end.
#include <algorithm>
#include <cstddef>
#include <iterator>
#include <memory>
#include <parallel/parallel.hpp>
#include <ranges>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

namespace {

// Every iterator copy shares the same position, as with an input stream.
class shared_position_input {
  struct state {
    int next = 0;
    int size = 0;
    int reads = 0;
  };

 public:
  explicit shared_position_input(int size) : state_(std::make_shared<state>(state{0, size, 0})) {}

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(std::shared_ptr<state> s) : state_(std::move(s)) {}
    int operator*() const {
      ++state_->reads;
      return state_->next;
    }
    iterator& operator++() {
      ++state_->next;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.state_->next >= it.state_->size;
    }

   private:
    std::shared_ptr<state> state_;
  };

  iterator begin() { return iterator(state_); }
  std::default_sentinel_t end() const { return {}; }
  int reads() const { return state_->reads; }

 private:
  std::shared_ptr<state> state_;
};

// As std::views::istream: begin() reads the first value, ++ the next one, * returns the value
// read. A second begin() would read (and lose) a value.
class reads_at_begin_input {
  struct state {
    int next = 0;
    int size = 0;
    int value = -1;
    bool done = false;
    void read() {
      if (next >= size) {
        done = true;
        return;
      }
      value = next++;
    }
  };

 public:
  explicit reads_at_begin_input(int size) : state_(std::make_shared<state>(state{0, size})) {}

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(std::shared_ptr<state> s) : state_(std::move(s)) {}
    int operator*() const { return state_->value; }
    iterator& operator++() {
      state_->read();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.state_->done; }

   private:
    std::shared_ptr<state> state_;
  };

  iterator begin() {
    state_->read();
    return iterator(state_);
  }
  std::default_sentinel_t end() const { return {}; }

 private:
  std::shared_ptr<state> state_;
};

template <class Imap>
std::vector<int> drain(Imap&& results) {
  std::vector<int> out;
  for (int v : results) out.push_back(v);
  return out;
}

int times_three(int x) { return 3 * x; }

// Runs check(imap_of) where imap_of(ordered, input, options) is imap (ordered = true_type) or
// imap_unordered over each start method, per call and on a pool.
template <class Check>
void for_each_process_imap(Check check) {
  auto per_call = [&](auto policy) {
    check([policy](auto ordered, auto&& input, const parallel::options& o) {
      if constexpr (decltype(ordered)::value)
        return parallel::imap(policy, times_three, std::forward<decltype(input)>(input), o);
      else
        return parallel::imap_unordered(policy, times_three, std::forward<decltype(input)>(input),
                                        o);
    });
  };
  auto pooled = [&](auto& pool) {
    check([&pool](auto ordered, auto&& input, const parallel::options& o) {
      if constexpr (decltype(ordered)::value)
        return pool.imap(times_three, std::forward<decltype(input)>(input), o);
      else
        return pool.imap_unordered(times_three, std::forward<decltype(input)>(input), o);
    });
  };
  {
    INFO("policy: processes<fork>{.workers = 2}");
    per_call(parallel::processes<parallel::start::fork>{.workers = 2});
  }
  {
    INFO("policy: processes<forkserver>{.workers = 2}");
    per_call(parallel::processes<parallel::start::forkserver>{.workers = 2});
  }
  {
    INFO("policy: processes<spawn>{.workers = 2}");
    per_call(parallel::processes<parallel::start::spawn>{.workers = 2});
  }
  {
    INFO("policy: process_pool<fork>{.workers = 2}");
    parallel::process_pool<parallel::start::fork> pool{{.workers = 2}};
    pooled(pool);
  }
  {
    INFO("policy: process_pool<spawn>{.workers = 2}");
    parallel::process_pool<parallel::start::spawn> pool{{.workers = 2}};
    pooled(pool);
  }
}

}  // namespace

TEST_CASE("process imap reads a move-only input iterator (std::views::istream) once, in order",
          "[processes][process_pool][imap]") {
  test_support::watchdog guard("process imap over std::views::istream");
  const std::vector<int> expected{3, 6, 9, 12, 15, 18};
  for_each_process_imap([&](auto imap_of) {
    std::istringstream ordered("1 2 3 4 5 6");
    REQUIRE(drain(imap_of(std::true_type{}, std::views::istream<int>(ordered), {})) == expected);
    std::istringstream any_order("1 2 3 4 5 6");
    auto got = drain(imap_of(std::false_type{}, std::views::istream<int>(any_order), {}));
    std::sort(got.begin(), got.end());
    REQUIRE(got == expected);
  });
}

// joblib's and Python's order for a generator input: P0 C0 P1 C1, never P0 P1 C0.
TEST_CASE("process imap at max_in_flight = 1 produces item k + 1 only after result k is taken",
          "[processes][process_pool][imap]") {
  test_support::watchdog guard("process imap, max_in_flight = 1 is lockstep");
  for_each_process_imap([](auto imap_of) {
    for (const bool ordered : {true, false}) {
      CAPTURE(ordered);
      std::vector<std::string> log;
      test_support::logged_input input(log, 6);
      const parallel::options one{.max_in_flight = 1};
      auto consume = [&log](auto&& results) {
        for (int y : results) log.push_back("C" + std::to_string(y / 3));
      };
      if (ordered)
        consume(imap_of(std::true_type{}, input, one));
      else
        consume(imap_of(std::false_type{}, input, one));
      REQUIRE(log == test_support::lockstep_log(6));
    }
  });
}

// CPython's test_imap_handle_iterable_exception: the results of the items the input gave come
// first, then the input's own exception.
TEST_CASE(
    "process imap: an input that throws part-way delivers every result before it, then "
    "throws",
    "[processes][process_pool][imap][errors]") {
  test_support::watchdog guard("process imap, an input that throws part-way");
  constexpr int broken = 25;
  for_each_process_imap([](auto imap_of) {
    for (const bool ordered : {true, false}) {
      for (std::size_t chunksize : {std::size_t{0}, std::size_t{1}, std::size_t{4}}) {
        CAPTURE(ordered, chunksize);
        std::vector<std::string> log;
        test_support::logged_input input(log, 40, broken);
        const parallel::options o{.chunksize = chunksize};
        std::vector<int> got;
        auto consume = [&got](auto&& results) {
          for (int y : results) got.push_back(y);
        };
        REQUIRE_THROWS_WITH(ordered ? consume(imap_of(std::true_type{}, input, o))
                                    : consume(imap_of(std::false_type{}, input, o)),
                            "the input broke at item 25");
        std::sort(got.begin(), got.end());
        REQUIRE(got.size() == static_cast<std::size_t>(broken));
        for (int i = 0; i < broken; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == 3 * i);
      }
    }
  });
}

TEST_CASE("process imap reads a shared-position single-pass input once",
          "[processes][process_pool][imap]") {
  test_support::watchdog guard("single-pass imap over processes");
  const std::vector<int> expected{0, 10, 20, 30, 40, 50, 60, 70, 80};
  auto times_ten = [](int x) { return 10 * x; };
  {
    shared_position_input input(9);
    REQUIRE(drain(parallel::imap(parallel::processes<parallel::start::fork>{.workers = 2},
                                 times_ten, input)) == expected);
    CHECK(input.reads() == 9);
  }
  parallel::process_pool<parallel::start::fork> pool{{.workers = 2}};
  {
    shared_position_input input(9);
    REQUIRE(drain(pool.imap(times_ten, input)) == expected);
    CHECK(input.reads() == 9);
  }
  {
    shared_position_input input(9);
    auto got = drain(pool.imap_unordered(times_ten, input));
    std::sort(got.begin(), got.end());
    REQUIRE(got == expected);
  }
}

TEST_CASE("process imap calls begin() once on an input whose begin() reads, as an istream's",
          "[processes][process_pool][imap]") {
  test_support::watchdog guard("begin-reads imap over processes");
  const std::vector<int> expected{0, 2, 4, 6, 8, 10};
  auto twice = [](int x) { return 2 * x; };
  REQUIRE(drain(parallel::imap(parallel::processes<parallel::start::fork>{.workers = 2}, twice,
                               reads_at_begin_input(6))) == expected);
  {
    auto got = drain(parallel::imap_unordered(
        parallel::processes<parallel::start::fork>{.workers = 2}, twice, reads_at_begin_input(6)));
    std::sort(got.begin(), got.end());
    REQUIRE(got == expected);
  }
  parallel::process_pool<parallel::start::fork> pool{{.workers = 2}};
  REQUIRE(drain(pool.imap(twice, reads_at_begin_input(6))) == expected);
}
