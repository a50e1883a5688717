// What several test files share: a watchdog that turns a deadlock into a failing test, and
// whether ThreadSanitizer is on (it cannot follow threads started in a child of fork()).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace test_support {

using namespace std::chrono_literals;

/// Aborts the test program with a message if the enclosing scope has not ended in time:
/// a deadlock fails loudly instead of hanging ctest.
class watchdog {
 public:
  explicit watchdog(std::string what, std::chrono::seconds limit = 20s)
      : thread_{[this, what = std::move(what), limit] {
          std::unique_lock lock{mutex_};
          if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "watchdog: '%s' did not finish within %lld s (deadlock?)\n",
                         what.c_str(), static_cast<long long>(limit.count()));
            std::abort();
          }
        }} {}
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() {
    {
      std::lock_guard lock{mutex_};
      done_ = true;
    }
    done_cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

constexpr bool under_thread_sanitizer =
#if defined(__SANITIZE_THREAD__)
    true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

}  // namespace test_support
