// futures_as_completed: take results as they finish, cancel what is no longer needed, and chain
// a step on a result without waiting for it: concurrent.futures' as_completed, Future.cancel
// and add_done_callback, as a Python user writes them:
//
//   def fetch(delay):
//       time.sleep(delay)
//       return delay
//
//   with ProcessPoolExecutor(2) as ex:
//       futs = [ex.submit(fetch, d) for d in (0.3, 0.1, 0.2)]
//       for f in as_completed(futs):
//           print(f.result())                 # 0.1, 0.2, 0.3: as each finishes
//
//   with ThreadPoolExecutor(1) as ex:
//       busy = ex.submit(time.sleep, 0.2)
//       spare = ex.submit(fetch, 1)           # still queued behind `busy`
//       print(spare.cancel())                 # True: it never runs
//       done, pending = wait([busy], timeout=0.01, return_when=FIRST_COMPLETED)
//
//   f = ex.submit(fetch, 2)
//   f.add_done_callback(lambda f: print(f.result() * 10))
//
// In C++, `for (parallel::future<R>& f : parallel::as_completed(futs))` yields each future as it
// finishes; `fut.cancel()` takes back a task that has not started (get() then throws
// parallel::cancelled_error); `fut.then(g)` is add_done_callback that also returns g's result
// as a future; wait_any / wait_all are wait(FIRST_COMPLETED / ALL_COMPLETED) with a timeout.
#include <chrono>
#include <iostream>
#include <optional>
#include <parallel/parallel.hpp>
#include <string>
#include <thread>
#include <vector>

#include "python_style.hpp"

using namespace std::chrono_literals;

int fetch(int delay_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  return delay_ms;
}

int main(int argc, char** argv) {
  parallel::spawn_main(argc, argv);
  examples::checker checks;

  // as_completed over process-pool futures: the fastest first.
  {
    parallel::process_pool<> ex{{.workers = 3}};
    std::vector<parallel::future<int>> futs;
    for (int delay : {600, 50, 300}) futs.push_back(ex.submit(fetch, delay));
    std::vector<int> order;
    for (parallel::future<int>& f : parallel::as_completed(futs)) {
      order.push_back(f.get());
      std::cout << "finished: " << order.back() << " ms\n";
    }
    checks.that(order.size() == 3, "as_completed yields every future once");
    // Sleeps of 50, 300 and 600 ms on three workers finish in that order unless the machine
    // stalls for a quarter of a second; the example says so rather than fail on a loaded CI.
    if (order != std::vector<int>{50, 300, 600})
      std::cout << "(a loaded machine reordered the finishes)\n";
  }

  // cancel: a task still queued behind a busy worker never runs.
  {
    parallel::thread_pool ex{1};
    auto busy = ex.submit(fetch, 200);
    auto spare = ex.submit(fetch, 1000);
    const bool cancelled = spare.cancel();
    std::cout << "spare.cancel(): " << (cancelled ? "True" : "False") << '\n';
    checks.that(cancelled, "a task queued behind a busy worker can be cancelled");
    std::vector<parallel::future<int>> waiting;
    waiting.push_back(std::move(busy));
    const std::optional<std::size_t> first = parallel::wait_any(waiting, 10ms);
    std::cout << "wait_any after 10 ms: " << (first ? "one finished" : "none yet") << '\n';
    checks.that(parallel::wait_all(waiting, 10s), "wait_all sees the busy task finish");
    if (cancelled) {
      bool raised = false;
      try {
        (void)spare.get();
      } catch (const parallel::cancelled_error& e) {
        raised = true;
        std::cout << "spare.get(): " << e.what() << '\n';
      }
      checks.that(raised, "get() of a cancelled future raises cancelled_error");
    }
  }

  // then: the next step runs when the result is there; nobody waits for the first one.
  {
    parallel::process_pool<> ex{{.workers = 2}};
    parallel::future<std::string> label =
        ex.submit(fetch, 2).then([](int r) { return std::to_string(r * 10) + " (from then)"; });
    const std::string text = label.get();
    std::cout << text << '\n';
    checks.equal(text, std::string("20 (from then)"), "then(g) gets g's result");
  }

  return checks.exit_code();
}
