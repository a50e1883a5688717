// ipc::engine on its own (detail/ipc/README.md), under the verbs: forked workers over the
// engine's socketpairs and shared rings, jobs posted and their outcomes read by a sink of the
// test's, the engine driven by the test's thread. Every job's results come back to its sink, in
// item order; a task that throws fails its job alone; a worker that dies fails the job it ran,
// the others complete, and its slot gets a new worker.
#include <chrono>
#include <csignal>
#include <cstdint>
#include <exception>
#include <memory>
#include <parallel/process_pool.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"

#if !defined(_WIN32)

#include <unistd.h>

namespace {

namespace ipc = parallel::detail::ipc;
using namespace std::chrono_literals;

/// What one job's sink received.
struct outcome {
  std::vector<std::uint64_t> results;
  std::exception_ptr error;
  bool done = false;
};

/// The test's sink: results of item i are i * i as std::uint64_t.
class recording_sink final : public ipc::job_sink {
 public:
  explicit recording_sink(std::size_t jobs) : outcomes(jobs) {}

  void results(ipc::job& j, parallel::decoder& in, std::uint64_t k, std::uint64_t) override {
    for (std::uint64_t i = 0; i < k; ++i)
      outcomes[j.tag].results.push_back(in.read<std::uint64_t>());
  }
  void failed(ipc::job& j, std::exception_ptr error) override { outcomes[j.tag].error = error; }
  void done(ipc::job& j) override {
    outcomes[j.tag].done = true;
    ++finished;
  }

  std::vector<outcome> outcomes;
  std::size_t finished = 0;
};

/// A job of items [first, first + count), its outcome at outcomes[tag].
std::unique_ptr<ipc::job> job_of(std::uint64_t first, std::uint64_t count, std::size_t tag,
                                 recording_sink& sink) {
  auto j = std::make_unique<ipc::job>();
  j->first = first;
  j->count = count;
  j->tag = tag;
  j->sink = &sink;
  parallel::encoder out(j->payload);
  ipc::write_task_header(out, first, count, 0);
  return j;
}

/// Item 66 throws; item 77 kills its worker (SIGKILL); the others give i * i.
void run_items(const ipc::task_header& t, parallel::decoder&, ipc::chunk_output& out) {
  out.run(t.first, t.count, false, [](std::uint64_t i) -> std::uint64_t {
    if (i == 66) throw std::runtime_error("item 66 refuses");
    if (i == 77) ::kill(::getpid(), SIGKILL);
    return i * i;
  });
}

/// An engine of two workers forked from this process, each running run_items for its tasks.
struct two_forked_workers {
  void (*handle)(const ipc::task_header&, parallel::decoder&, ipc::chunk_output&) = run_items;
  ipc::engine engine{ipc::engine::config{.workers = 2, .handshake_timeout = 5s},
                     parallel::detail::fork_starter(handle)};
};

/// Drives the engine from this thread until every job is done (or a minute passes).
void drive_until_done(ipc::engine& engine, const recording_sink& sink, std::size_t jobs) {
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (sink.finished < jobs) {
    REQUIRE(std::chrono::steady_clock::now() < until);
    engine.pump(100);
  }
}

}  // namespace

TEST_CASE("engine: every job's results reach its sink, in item order, from every worker",
          "[engine][processes]") {
  two_forked_workers forked;
  ipc::engine& engine = forked.engine;
  constexpr std::size_t jobs = 40;
  constexpr std::uint64_t per_job = 25;  // items 0 .. 999, but for 66 and 77 below
  recording_sink sink(jobs);
  for (std::size_t k = 0; k < jobs; ++k) {
    const std::uint64_t first = 1000 + k * per_job;  // clear of the items that fail
    engine.post(job_of(first, per_job, k, sink));
  }
  drive_until_done(engine, sink, jobs);
  for (std::size_t k = 0; k < jobs; ++k) {
    INFO("job " << k);
    const outcome& o = sink.outcomes[k];
    CHECK(o.done);
    CHECK_FALSE(o.error);
    REQUIRE(o.results.size() == per_job);
    for (std::uint64_t i = 0; i < per_job; ++i) {
      const std::uint64_t item = 1000 + k * per_job + i;
      REQUIRE(o.results[i] == item * item);
    }
  }
  CHECK(engine.outstanding() == 0);
}

TEST_CASE("engine: a task that throws fails its own job, with the results before it",
          "[engine][processes]") {
  two_forked_workers forked;
  ipc::engine& engine = forked.engine;
  recording_sink sink(3);
  engine.post(job_of(0, 50, 0, sink));   // items 0 .. 49
  engine.post(job_of(60, 10, 1, sink));  // 60 .. 69: 66 throws
  engine.post(job_of(100, 5, 2, sink));
  drive_until_done(engine, sink, 3);
  CHECK_FALSE(sink.outcomes[0].error);
  CHECK(sink.outcomes[0].results.size() == 50);
  REQUIRE(sink.outcomes[1].error);
  CHECK(sink.outcomes[1].results == std::vector<std::uint64_t>{3600, 3721, 3844, 3969, 4096, 4225});
  CHECK_THROWS_AS(std::rethrow_exception(sink.outcomes[1].error), parallel::remote_error);
  CHECK_FALSE(sink.outcomes[2].error);
  CHECK(sink.outcomes[2].results == std::vector<std::uint64_t>{10000, 10201, 10404, 10609, 10816});
}

TEST_CASE("engine: a worker that dies fails the job it ran; the others complete on a new worker",
          "[engine][processes]") {
  two_forked_workers forked;
  ipc::engine& engine = forked.engine;
  constexpr std::size_t jobs = 12;
  recording_sink sink(jobs);
  engine.post(job_of(70, 10, 0, sink));  // 77 kills its worker
  for (std::size_t k = 1; k < jobs; ++k) engine.post(job_of(200 + k * 10, 10, k, sink));
  drive_until_done(engine, sink, jobs);
  REQUIRE(sink.outcomes[0].error);
  try {
    std::rethrow_exception(sink.outcomes[0].error);
  } catch (const parallel::worker_died& e) {
    INFO("what(): " << e.what());
    CHECK(std::string(e.what()).find("item 77") != std::string::npos);
  } catch (...) {
    FAIL("the dead worker's job failed with another error than worker_died");
  }
  for (std::size_t k = 1; k < jobs; ++k) {
    INFO("job " << k);
    CHECK_FALSE(sink.outcomes[k].error);
    CHECK(sink.outcomes[k].results.size() == 10);
  }
  // The engine replaced the worker: a later job runs on two live workers again.
  recording_sink again(2);
  engine.post(job_of(500, 3, 0, again));
  engine.post(job_of(600, 3, 1, again));
  drive_until_done(engine, again, 2);
  CHECK(again.outcomes[0].results == std::vector<std::uint64_t>{250000, 251001, 252004});
  CHECK(again.outcomes[1].results == std::vector<std::uint64_t>{360000, 361201, 362404});
}

#endif  // !_WIN32
