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
  {
    INFO("policy: processes<fork>{.workers = 2}");
    check(test_support::imap_on(parallel::processes<parallel::start::fork>{.workers = 2},
                                times_three));
  }
  {
    INFO("policy: processes<forkserver>{.workers = 2}");
    check(test_support::imap_on(parallel::processes<parallel::start::forkserver>{.workers = 2},
                                times_three));
  }
  {
    INFO("policy: processes<spawn>{.workers = 2}");
    check(test_support::imap_on(parallel::processes<parallel::start::spawn>{.workers = 2},
                                times_three));
  }
  {
    INFO("policy: process_pool<fork>{.workers = 2}");
    parallel::process_pool<parallel::start::fork> pool{{.workers = 2}};
    check(test_support::imap_on_pool(pool, times_three));
  }
  {
    INFO("policy: process_pool<spawn>{.workers = 2}");
    parallel::process_pool<parallel::start::spawn> pool{{.workers = 2}};
    check(test_support::imap_on_pool(pool, times_three));
  }
}

}  // namespace

TEST_CASE("process imap reads a move-only input iterator (std::views::istream) once, in order",
          "[processes][process_pool][imap]") {
  test_support::watchdog guard("process imap over std::views::istream");
  for_each_process_imap([](auto imap_of) { test_support::check_istream(imap_of, times_three); });
}

TEST_CASE("process imap at max_in_flight = 1 produces item k + 1 only after result k is taken",
          "[processes][process_pool][imap]") {
  test_support::watchdog guard("process imap, max_in_flight = 1 is lockstep");
  for_each_process_imap(
      [](auto imap_of) { test_support::check_lockstep(imap_of, [](int y) { return y / 3; }); });
}

TEST_CASE(
    "process imap: an input that throws part-way delivers every result before it, then "
    "throws",
    "[processes][process_pool][imap][errors]") {
  test_support::watchdog guard("process imap, an input that throws part-way");
  for_each_process_imap(
      [](auto imap_of) { test_support::check_input_breaks(imap_of, times_three); });
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
