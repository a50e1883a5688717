// The automatic chunk size of process calls (detail::chunk_planner): how a call is cut into
// the jobs its workers run.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <parallel/parallel.hpp>
#include <utility>
#include <vector>

#include "catch.hpp"

namespace {

using parallel::detail::chunk_planner;
using parallel::detail::cost_memory;
using parallel::detail::learned_cost;

/// The identity of the function a test's learned costs are for.
constexpr std::uint64_t some_function = 1;

/// Cuts a call of `n` items as process_map_call does, each job measured as it is cut (as if it
/// came back at once): `ns` per item, `item_bytes` of items and 8 bytes of result each.
std::vector<std::size_t> cut(std::size_t n, std::size_t workers, std::uint64_t ns,
                             std::size_t item_bytes, cost_memory memory = {}) {
  chunk_planner planner(0, workers, n, memory);
  std::vector<std::size_t> chunks;
  std::size_t next = 0;
  while (next < n) {
    const std::size_t count = std::min(planner.next(n - next), n - next);
    REQUIRE(count > 0);
    planner.note_input(count, count * item_bytes);
    planner.learn(count, count * ns, count * 8);
    chunks.push_back(count);
    next += count;
  }
  return chunks;
}

}  // namespace

TEST_CASE(
    "chunk planner: a call of tiny items ends in a few chunks, not a tail of ever smaller ones",
    "[chunk_planner]") {
  const std::size_t n = 2'000'000;
  learned_cost memory;
  for (int call = 0; call < 2; ++call) {  // a first call probes, the second starts from memory
    CAPTURE(call);
    const std::vector<std::size_t> chunks = cut(n, 2, 4, 8, {&memory, some_function});
    // Each job costs a round trip: a small one is worth it only as the call's last, or as a
    // first call's probe of an unknown cost.
    const std::size_t floor = n / 16;
    const auto small =
        std::count_if(chunks.begin(), chunks.end() - 1, [&](std::size_t c) { return c < floor; });
    CHECK(small <= (call == 0 ? 1 : 0));
    CHECK(chunks.size() <= 40);
  }
}

TEST_CASE("chunk planner: a job's items stay within a MiB, so that they fit its worker's ring",
          "[chunk_planner]") {
  for (const std::size_t item_bytes : {std::size_t{8}, std::size_t{64}, std::size_t{4096}}) {
    CAPTURE(item_bytes);
    const std::vector<std::size_t> chunks = cut(1'000'000, 2, 1, item_bytes);
    CHECK(*std::max_element(chunks.begin(), chunks.end()) * item_bytes <= std::size_t{1} << 20);
  }
}

TEST_CASE(
    "chunk planner: a call that starts from a learned cost keeps its first chunk within a MiB",
    "[chunk_planner]") {
  // The first chunk is cut before any of the call's items are encoded: what the last call
  // learned of their size must bound it, or a chunk of 4 MiB misses the worker's ring.
  learned_cost memory;
  (void)cut(10'000'000, 2, 4, 8, {&memory, some_function});
  chunk_planner planner(0, 2, 10'000'000, {&memory, some_function});
  CHECK(planner.next(10'000'000) * 8 <= std::size_t{1} << 20);
}

TEST_CASE("chunk planner: every worker gets a share of a short call of slow items",
          "[chunk_planner]") {
  // 40 items of 1 ms on 4 workers: no worker is left out by a chunk too large.
  const std::vector<std::size_t> chunks = cut(40, 4, 1'000'000, 8);
  CHECK(chunks.size() >= 4);
  CHECK(*std::max_element(chunks.begin(), chunks.end()) <= 10);
}

TEST_CASE("chunk planner: a cost learned before does not keep a worker out of a call of slow items",
          "[chunk_planner]") {
  // The function was fast last time (10 ns an item); now its items take 10 ms: the first chunk
  // still leaves the other worker a share.
  learned_cost memory;
  memory.of = some_function;
  memory.ns_per_item = 10;
  memory.bytes_per_item = 8;
  chunk_planner planner(0, 2, 100, {&memory, some_function});
  CHECK(planner.next(100) <= 50);
}

TEST_CASE(
    "chunk planner: a cost learned for one function is not taken for another of the same type",
    "[chunk_planner]") {
  // Two captures of one lambda, and two targets of one function pointer type, are two functions:
  // the cost of the first (4 ns an item) must not size the first chunks of the second, which
  // starts from one-item probes as a function never measured does.
  using parallel::detail::learned_cost_for;
  const auto spin = [](int rounds) { return [rounds](int x) { return x + rounds; }; };
  const auto cheap = spin(1);
  const auto slow = spin(1'000'000);
  int (*first)(int) = [](int x) { return x + 1; };
  int (*second)(int) = [](int x) { return x + 2; };
  const std::pair<cost_memory, cost_memory> pairs[] = {
      {learned_cost_for<int>(cheap), learned_cost_for<int>(slow)},
      {learned_cost_for<int>(first), learned_cost_for<int>(second)}};
  for (const auto& [measured, other] : pairs) {
    REQUIRE(measured.where != nullptr);
    REQUIRE(measured.where == other.where);  // one memory per type ...
    REQUIRE(measured.of != other.of);        // ... for one function at a time
    (void)cut(1'000'000, 2, 4, 8, measured);
    CHECK(chunk_planner(0, 2, 1'000'000, measured).next(1'000'000) > 1000);
    CHECK(chunk_planner(0, 2, 1'000'000, other).next(1'000'000) == 1);
  }
  // A std::function can hold any function: its cost is kept nowhere.
  const std::function<int(int)> any = cheap;
  CHECK(learned_cost_for<int>(any).where == nullptr);
}
