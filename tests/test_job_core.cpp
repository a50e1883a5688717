// The job core both process transports share (detail::ipc::job_core: the process engine and the
// MPI cluster): which worker gets the next job, what a worker's loss does to its jobs,
// cancelling, and how outcomes reach their sinks.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <parallel/parallel.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"

namespace {

using parallel::detail::ipc::job;
using parallel::detail::ipc::job_core;
using parallel::detail::ipc::job_sink;

/// Records what the core tells it, in order.
struct recording_sink final : job_sink {
  std::vector<int> values;
  std::vector<std::string> errors;
  std::vector<std::uint64_t> done_firsts;
  bool throw_in_results = false;

  void results(job&, parallel::decoder& in, std::uint64_t k, std::uint64_t) override {
    if (throw_in_results) throw std::runtime_error("codec failed");
    for (std::uint64_t i = 0; i < k; ++i) values.push_back(in.read<int>());
  }
  void failed(job&, std::exception_ptr error) override {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      errors.emplace_back(e.what());
    }
  }
  void done(job& j) override { done_firsts.push_back(j.first); }
};

std::unique_ptr<job> make_job(recording_sink& sink, std::uint64_t first, std::uint64_t count = 1) {
  auto j = std::make_unique<job>();
  j->first = first;
  j->count = count;
  j->sink = &sink;
  return j;
}

/// A result payload as a worker writes it (worker.hpp's layout): time, count, values, no error.
std::vector<std::byte> result_payload(std::uint64_t took_ns, const std::vector<int>& values,
                                      bool trailing_garbage = false) {
  parallel::encoder out;
  out.write(took_ns);
  out.write(static_cast<std::uint64_t>(values.size()));
  for (int v : values) out.write(v);
  out.write(static_cast<std::uint8_t>(trailing_garbage ? 7 : 0));
  return out.take();
}

/// Sends every job the core will give out now; the workers all report `fit::ready`.
std::vector<std::size_t> dispatch_all(job_core& core, std::uint64_t now) {
  std::vector<std::size_t> to;
  while (const job* next = core.next()) {
    const std::size_t i =
        core.least_busy(*next, now, [](std::size_t) { return job_core::fit::ready; });
    if (i == job_core::none) break;
    (void)core.give_next(i, now);
    to.push_back(i);
  }
  return to;
}

/// Worker w answers the first job it holds at `now`: one result, after `took_ns` of work.
void answer(job_core& core, std::size_t w, std::uint64_t now, std::uint64_t took_ns) {
  auto j = core.take_result(w, core.at(w).in_flight.front()->id, now);
  core.settle(*j, result_payload(took_ns, {static_cast<int>(j->first)}));
}

/// Two jobs posted and given out, one to each of two workers.
void two_running(job_core& core, recording_sink& sink) {
  core.post(make_job(sink, 0));
  core.post(make_job(sink, 1));
  REQUIRE(dispatch_all(core, 0).size() == 2);
}

}  // namespace

TEST_CASE("job core: before any job's cost is known, each worker holds one job", "[job_core]") {
  recording_sink sink;
  job_core core(2);
  for (std::uint64_t i = 0; i < 5; ++i) core.post(make_job(sink, i));
  // No cost known: one each, the rest waits (an idle worker never waits behind a long job).
  CHECK(dispatch_all(core, 1000) == std::vector<std::size_t>{0, 1});
  CHECK(core.pending() == 3);
  // A result of 10 us: up to ~1 ms of work may now queue behind the running job.
  auto first = core.take_result(0, core.at(0).in_flight.front()->id, 2000);
  core.settle(*first, result_payload(10'000, {42}));
  CHECK(sink.values == std::vector<int>{42});
  CHECK(core.typical_job_ns() == 10'000);
  CHECK(core.depth() > 2);
  const auto more = dispatch_all(core, 2000);
  CHECK(more.size() == 3);
  CHECK(core.pending() == 0);
}

TEST_CASE("job core: a worker stuck in a long job gets nothing queued behind it", "[job_core]") {
  recording_sink sink;
  job_core core(2);
  two_running(core, sink);
  for (std::size_t w = 0; w < 2; ++w) answer(core, w, 1000, 100'000);  // a job takes 100 us
  core.post(make_job(sink, 2));
  core.post(make_job(sink, 3));
  REQUIRE(dispatch_all(core, 1000).size() == 2);  // one each, both running from t = 1 us
  // At 50 ms worker 0's job has run 500 times its typical time; worker 1 took a new one at 49 ms.
  answer(core, 1, 49'000'000, 100'000);
  for (std::uint64_t i = 4; i < 8; ++i) core.post(make_job(sink, i));
  const auto to = dispatch_all(core, 50'000'000);
  REQUIRE(!to.empty());
  for (std::size_t w : to) CHECK(w == 1);
}

TEST_CASE("job core: a lost worker's culprit fails, the jobs queued behind it run elsewhere",
          "[job_core]") {
  recording_sink sink;
  job_core core(2);
  two_running(core, sink);
  answer(core, 0, 10, 10);  // short jobs: workers may hold several
  for (std::uint64_t i = 2; i < 6; ++i) core.post(make_job(sink, i));
  (void)dispatch_all(core, 20);
  // Worker 1 dies in its first job: that one fails, the others come back, first in the queue
  // and in their order.
  const std::size_t held = core.at(1).in_flight.size();
  REQUIRE(held >= 1);
  std::vector<std::uint64_t> behind;
  for (std::size_t k = 1; k < held; ++k) behind.push_back(core.at(1).in_flight[k]->first);
  core.lose(1, core.at(1).in_flight.front().get(),
            std::make_exception_ptr(parallel::worker_died("worker 1 died")));
  CHECK(sink.errors == std::vector<std::string>{"worker 1 died"});
  CHECK(sink.done_firsts == std::vector<std::uint64_t>{0, 1});
  CHECK(core.at(1).in_flight.empty());
  std::vector<std::uint64_t> front;
  for (std::size_t k = 0; k < behind.size(); ++k) {
    auto next = core.take_next();
    front.push_back(next->first);
  }
  CHECK(front == behind);
}

TEST_CASE("job core: cancel drops queued jobs, takes back those not started, forgets the rest",
          "[job_core]") {
  recording_sink a;
  recording_sink b;
  job_core core(1);
  core.post(make_job(a, 0));
  core.post(make_job(b, 0));
  REQUIRE(dispatch_all(core, 0).size() == 1);  // a's job runs; b's waits
  core.post(make_job(a, 1));
  std::size_t asked = 0;
  core.cancel(&a, [&](std::size_t, const job&) {
    ++asked;
    return true;  // the worker gives it back
  });
  CHECK(asked == 1);
  CHECK(core.at(0).in_flight.front()->withdrawn);
  CHECK(core.outstanding() == 1);  // b's
  // The withdrawn job's answer reaches no sink.
  auto j = core.take_result(0, core.at(0).in_flight.front()->id, 5);
  CHECK(j->sink == nullptr);
  CHECK(a.done_firsts.empty());
  // Withdrawing b's queued job: it leaves the queue, and its sink is never called.
  CHECK(core.withdraw(&b));
  CHECK(core.next() == nullptr);
  CHECK(b.done_firsts.empty());
}

TEST_CASE("job core: a codec's error fails its job alone; a broken payload fails it and throws",
          "[job_core]") {
  recording_sink good;
  recording_sink bad;
  bad.throw_in_results = true;
  job_core core(1);
  core.post(make_job(bad, 0));
  REQUIRE(dispatch_all(core, 0).size() == 1);
  auto j = core.take_result(0, core.at(0).in_flight.front()->id, 1);
  core.settle(*j, result_payload(1, {1}));  // no throw: the worker is fine
  CHECK(bad.errors == std::vector<std::string>{"codec failed"});
  CHECK(bad.done_firsts.size() == 1);

  core.post(make_job(good, 1));
  REQUIRE(dispatch_all(core, 1).size() == 1);
  auto k = core.take_result(0, core.at(0).in_flight.front()->id, 2);
  CHECK_THROWS_WITH(core.settle(*k, result_payload(1, {5}, /*trailing_garbage=*/true)),
                    Catch::Contains("protocol error"));
  REQUIRE(good.errors.size() == 1);
  CHECK(good.errors[0].find("protocol error") != std::string::npos);
  CHECK(good.done_firsts.size() == 1);
  // A result for a task the worker does not hold is the worker's protocol error.
  CHECK_THROWS_WITH(core.take_result(0, 12345, 3), Catch::Contains("which it was not running"));
}

TEST_CASE("job core: a job limited to the first workers never goes to the others", "[job_core]") {
  recording_sink sink;
  job_core core(3);
  for (std::uint64_t i = 0; i < 3; ++i) {
    auto j = make_job(sink, i);
    j->workers = 1;
    core.post(std::move(j));
  }
  CHECK(dispatch_all(core, 0) == std::vector<std::size_t>{0});
  CHECK(core.pending() == 2);
  std::size_t made = 0;
  core.fail_everything([&made] {
    ++made;
    return std::make_exception_ptr(parallel::error("the transport failed"));
  });
  CHECK(made == 3);  // an exception object of its own for each job
  CHECK(sink.errors.size() == 3);
  CHECK(core.outstanding() == 0);
}

TEST_CASE("job core: a transport that sees results late keeps a worker's next job there",
          "[job_core]") {
  recording_sink sink;
  job_core core(1, {.min_depth = 2});  // as the MPI cluster, whose loop polls
  for (std::uint64_t i = 0; i < 4; ++i) core.post(make_job(sink, i));
  CHECK(dispatch_all(core, 0).size() == 2);  // no cost known yet: still the next one
  answer(core, 0, 50'000'000, 50'000'000);   // a job takes 50 ms
  CHECK(dispatch_all(core, 50'000'000).size() == 1);
  CHECK(core.at(0).in_flight.size() == 2);  // behind a long job, one and no more
  CHECK(core.pending() == 1);
}

namespace {

/// A job expected (by its call's measurements) to take `estimated_ns` in its worker.
std::unique_ptr<job> estimated_job(recording_sink& sink, std::uint64_t first,
                                   std::uint64_t estimated_ns) {
  auto j = make_job(sink, first);
  j->estimated_ns = estimated_ns;
  return j;
}

constexpr job_core::config packing{.pack_ns = 20'000, .unpack_ns = 100'000};

/// A core whose workers have each run one job of `took_ns` (so it knows what a job costs), at
/// time 0.
void warmed(job_core& core, recording_sink& sink, std::uint64_t took_ns) {
  two_running(core, sink);
  for (std::size_t w = 0; w < 2; ++w) answer(core, w, 0, took_ns);
}

}  // namespace

TEST_CASE("job core: short jobs go behind a busy worker's short jobs, not to an idle worker",
          "[job_core]") {
  recording_sink sink;
  job_core core(2, packing);
  warmed(core, sink, 1'000);
  // Two jobs of ~1 us: waking the idle worker would cost more than running both on one.
  core.post(estimated_job(sink, 0, 1'000));
  core.post(estimated_job(sink, 1, 1'000));
  CHECK(dispatch_all(core, 0) == std::vector<std::size_t>{0, 0});
  // While they are on time, the idle worker is not to take the queued one back...
  CHECK_FALSE(core.worth_moving(0, 10'000));
  // ...and a sleeping transport is told when to look again: once the running job is late.
  CHECK(core.moving_due_ns(0, 10'000) == 100'001);
  CHECK(core.moving_due_ns(1, 10'000) == 0);  // worker 1 holds nothing
  // The running job is 150 us late (a function whose items got slow): now it is.
  CHECK(core.worth_moving(0, 150'000));
  // Should they still be there after the look (their worker had just started them), the next
  // look is a millisecond later, not a busy loop.
  CHECK(core.moving_due_ns(0, 150'000) == 1'150'000);
}

TEST_CASE("job core: only jobs known to be short are packed, up to pack_ns of work per worker",
          "[job_core]") {
  recording_sink sink;
  SECTION("an unknown cost goes to the idle worker") {
    job_core core(2, packing);
    warmed(core, sink, 1'000);
    core.post(estimated_job(sink, 0, 0));
    core.post(estimated_job(sink, 1, 0));
    CHECK(dispatch_all(core, 0) == std::vector<std::size_t>{0, 1});
  }
  SECTION("jobs of 50 us are not short") {
    job_core core(2, packing);
    warmed(core, sink, 50'000);
    core.post(estimated_job(sink, 0, 50'000));
    core.post(estimated_job(sink, 1, 50'000));
    CHECK(dispatch_all(core, 0) == std::vector<std::size_t>{0, 1});
    CHECK(core.worth_moving(0, 0));  // nothing packed there: an idle worker may take work
  }
  SECTION("a worker takes short jobs until it has ~pack_ns of them, then the next goes on") {
    job_core core(2, packing);
    warmed(core, sink, 8'000);
    for (std::uint64_t i = 0; i < 8; ++i) core.post(estimated_job(sink, i, 8'000));
    const auto to = dispatch_all(core, 0);
    // 8 us each: worker 0 would start a fourth only 24 us from now, past pack_ns.
    REQUIRE(to.size() >= 4);
    CHECK(std::vector<std::size_t>(to.begin(), to.begin() + 4) ==
          std::vector<std::size_t>{0, 0, 0, 1});
  }
  SECTION("a transport that cannot take a job back (pack_ns 0) never packs") {
    job_core core(2);
    warmed(core, sink, 1'000);
    core.post(estimated_job(sink, 0, 1'000));
    core.post(estimated_job(sink, 1, 1'000));
    CHECK(dispatch_all(core, 0) == std::vector<std::size_t>{0, 1});
  }
}
