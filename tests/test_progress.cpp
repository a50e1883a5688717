// parallel::progress and parallel::progress_bar (progress.hpp): the callback of options.progress
// is called from one thread at a time with a non-decreasing done, total = n for sized input and
// 0 when unknown, and a last call that reports everything done; the bar writes plain lines when
// stderr is not a terminal.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <list>
#include <mutex>
#include <parallel/parallel.hpp>
#include <ranges>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#endif

namespace {

using test_support::for_each_policy;
using test_support::single_pass;

using namespace std::chrono_literals;

std::vector<int> numbers(int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(i);
  return out;
}

/// Records every (done, total) call and notices two calls overlapping in time.
class progress_log {
 public:
  parallel::progress callback() {
    return parallel::progress{[this](std::size_t done, std::size_t total) {
      if (inside_.exchange(true)) overlapped_ = true;
      {
        std::lock_guard lock{mutex_};
        calls_.emplace_back(done, total);
      }
      // Stay a little while, so that a concurrent call would be caught overlapping.
      const auto until = std::chrono::steady_clock::now() + 20us;
      while (std::chrono::steady_clock::now() < until) {
      }
      inside_ = false;
    }};
  }

  std::vector<std::pair<std::size_t, std::size_t>> calls() const {
    std::lock_guard lock{mutex_};
    return calls_;
  }
  bool overlapped() const { return overlapped_; }

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<std::size_t, std::size_t>> calls_;
  std::atomic<bool> inside_{false};
  std::atomic<bool> overlapped_{false};
};

/// One call at a time, done never decreasing and never above a known total.
void check_well_formed(const progress_log& log) {
  REQUIRE_FALSE(log.overlapped());
  const auto calls = log.calls();
  for (std::size_t i = 0; i < calls.size(); ++i) {
    CAPTURE(i, calls[i].first, calls[i].second);
    if (calls[i].second != 0) REQUIRE(calls[i].first <= calls[i].second);
    if (i > 0) REQUIRE(calls[i].first >= calls[i - 1].first);
  }
}

/// Well formed, every call with total n, and the last call has done == total == n.
void check_sized(const progress_log& log, std::size_t n) {
  check_well_formed(log);
  const auto calls = log.calls();
  REQUIRE_FALSE(calls.empty());
  for (const auto& [done, total] : calls) REQUIRE(total == n);
  REQUIRE(calls.back().first == n);
}

}  // namespace

TEST_CASE("progress: off by default, on with a callable", "[progress]") {
  const parallel::progress off{};
  REQUIRE_FALSE(static_cast<bool>(off));
  std::size_t seen_done = 0;
  std::size_t seen_total = 0;
  const parallel::progress on{[&](std::size_t done, std::size_t total) {
    seen_done = done;
    seen_total = total;
  }};
  REQUIRE(static_cast<bool>(on));
  on(3, 10);
  REQUIRE(seen_done == 3);
  REQUIRE(seen_total == 10);
  REQUIRE(static_cast<bool>(parallel::progress_bar("with a bar")));
}

TEST_CASE("progress: map reports every item done, one call at a time", "[progress]") {
  for_each_policy([](auto policy) {
    for (std::size_t chunksize : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
      CAPTURE(chunksize);
      progress_log log;
      const auto out = parallel::map(
          policy, [](int x) { return x + 1; }, numbers(2000),
          parallel::options{.chunksize = chunksize, .progress = log.callback()});
      REQUIRE(out.size() == 2000);
      check_sized(log, 2000);
    }
    progress_log list_log;
    std::list<int> items{1, 2, 3, 4, 5};
    (void)parallel::map(
        policy, [](int x) { return x; }, items, parallel::options{.progress = list_log.callback()});
    check_sized(list_log, 5);

    progress_log star_log;
    const std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}};
    (void)parallel::starmap(
        policy, [](int a, int b) { return a + b; }, pairs,
        parallel::options{.progress = star_log.callback()});
    check_sized(star_log, 2);
  });
}

TEST_CASE("progress: empty input ends at 0 of 0", "[progress]") {
  for_each_policy([](auto policy) {
    progress_log log;
    const auto out = parallel::map(
        policy, [](int x) { return x; }, std::vector<int>{},
        parallel::options{.progress = log.callback()});
    REQUIRE(out.empty());
    check_well_formed(log);
    for (const auto& [done, total] : log.calls()) {
      REQUIRE(done == 0);
      REQUIRE(total == 0);
    }
  });
}

TEST_CASE("progress: unsized input reports total 0 until known and ends with every item done",
          "[progress]") {
  for_each_policy([](auto policy) {
    progress_log log;
    single_pass items{500};
    const auto out = parallel::map(
        policy, [](int x) { return x; }, items, parallel::options{.progress = log.callback()});
    REQUIRE(out.size() == 500);
    check_well_formed(log);
    const auto calls = log.calls();
    REQUIRE_FALSE(calls.empty());
    // The total is unknown (0) until the input has been read to its end; a backend that reads
    // it all first may report the real total.
    for (const auto& [done, total] : calls) REQUIRE((total == 0 || total == 500));
    REQUIRE(calls.back().first == 500);
  });
}

TEST_CASE("progress: imap reports as results are produced", "[progress][imap]") {
  for_each_policy([](auto policy) {
    progress_log sized;
    int consumed = 0;
    for (int& v : parallel::imap(
             policy, [](int x) { return x; }, numbers(300),
             parallel::options{.progress = sized.callback()})) {
      REQUIRE(v == consumed++);
    }
    check_sized(sized, 300);

    // Unbounded: total unknown; after the range is gone, no more calls.
    progress_log unbounded;
    {
      int taken = 0;
      for (int& v : parallel::imap(
               policy, [](int x) { return x; }, std::views::iota(0),
               parallel::options{.max_in_flight = 16, .progress = unbounded.callback()})) {
        (void)v;
        if (++taken == 100) break;
      }
    }
    const std::size_t calls_at_destruction = unbounded.calls().size();
    std::this_thread::sleep_for(50ms);
    REQUIRE(unbounded.calls().size() == calls_at_destruction);
    check_well_formed(unbounded);
    for (const auto& [done, total] : unbounded.calls()) REQUIRE(total == 0);
  });
}

#if defined(__unix__) || defined(__APPLE__)
TEST_CASE("progress: progress_bar writes plain lines when stderr is not a terminal", "[progress]") {
  std::FILE* capture = std::tmpfile();
  REQUIRE(capture != nullptr);
  std::fflush(stderr);
  std::cerr.flush();
  const int saved = dup(2);
  REQUIRE(saved >= 0);
  REQUIRE(dup2(fileno(capture), 2) == 2);
  std::vector<int> out;
  {
    const parallel::options opts{.progress = parallel::progress_bar("squaring")};
    out = parallel::map([](int x) { return x * x; }, numbers(1000), opts);
  }
  std::fflush(stderr);
  std::cerr.flush();
  dup2(saved, 2);
  close(saved);

  REQUIRE(out.size() == 1000);
  REQUIRE(out[999] == 999 * 999);
  std::string text;
  std::rewind(capture);
  for (int c = std::fgetc(capture); c != EOF; c = std::fgetc(capture))
    text.push_back(static_cast<char>(c));
  std::fclose(capture);
  INFO("captured stderr:\n" << text);
  REQUIRE_FALSE(text.empty());
  REQUIRE(text.find('\r') == std::string::npos);    // no redrawing in place
  REQUIRE(text.find('\x1b') == std::string::npos);  // no terminal escapes
  REQUIRE(text.back() == '\n');
  const std::size_t last_start = text.find_last_of('\n', text.size() - 2);
  const std::string last_line = text.substr(last_start == std::string::npos ? 0 : last_start + 1);
  REQUIRE(last_line.find("squaring") != std::string::npos);
  REQUIRE(last_line.find("1000") != std::string::npos);
  REQUIRE(last_line.find('%') != std::string::npos);
}
#endif

TEST_CASE("progress: the bar's line fits the width it is given", "[progress]") {
  using parallel::detail::progress_bar_state;
  const progress_bar_state bar("fitting");
  // No limit (a log): a bar of 25.
  const std::string log_line = bar.line(500, 1000, 2.0, 0);
  INFO(log_line);
  CHECK(log_line.find(" 50%|") != std::string::npos);
  CHECK(log_line.find("500/1000") != std::string::npos);
  for (const std::size_t columns : {std::size_t{200}, std::size_t{79}, std::size_t{60},
                                    std::size_t{45}, std::size_t{30}, std::size_t{10}}) {
    for (const std::size_t total : {std::size_t{1000}, std::size_t{0}}) {
      CAPTURE(columns, total);
      const std::string line = bar.line(500, total, 2.0, columns);
      INFO(line);
      const std::size_t shown = progress_bar_state::columns_of(line);
      CHECK(shown <= columns);
      // Wide enough for the text: the bar takes the rest, so the line is exactly that wide.
      if (total != 0 && columns >= 60) CHECK(shown == columns);
      if (columns >= 60) CHECK(line.find(total != 0 ? "500/1000" : "500 [") != std::string::npos);
    }
  }
  CHECK(progress_bar_state::columns_of("█▏ab") == 4);
  CHECK(progress_bar_state::first_columns("█▏ab", 2) == "█▏");
}

#if defined(__unix__) || defined(__APPLE__)
namespace {

/// What the map calls of `run` write on stderr when stderr is a terminal `columns` wide (a
/// pseudo-terminal of its own).
template <class Run>
std::string on_a_terminal(unsigned short columns, Run run) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  REQUIRE(master >= 0);
  REQUIRE(::grantpt(master) == 0);
  REQUIRE(::unlockpt(master) == 0);
  const char* name = ::ptsname(master);  // NOLINT(concurrency-mt-unsafe): this thread only
  REQUIRE(name != nullptr);
  const int terminal = ::open(name, O_RDWR | O_NOCTTY);
  REQUIRE(terminal >= 0);
  winsize size{};
  size.ws_row = 24;
  size.ws_col = columns;
  REQUIRE(::ioctl(terminal, TIOCSWINSZ, &size) == 0);
  std::fflush(stderr);
  std::cerr.flush();
  const int saved = ::dup(2);
  REQUIRE(saved >= 0);
  REQUIRE(::dup2(terminal, 2) == 2);
  run();
  std::fflush(stderr);
  std::cerr.flush();
  ::dup2(saved, 2);
  ::close(saved);
  ::close(terminal);
  std::string text;
  ::fcntl(master, F_SETFL, ::fcntl(master, F_GETFL) | O_NONBLOCK);
  char buffer[4096];
  for (ssize_t got = 0; (got = ::read(master, buffer, sizeof buffer)) > 0;)
    text.append(buffer, static_cast<std::size_t>(got));
  ::close(master);
  return text;
}

/// The lines a terminal shows for `text`, one per redraw (\r) or new line, escapes removed.
std::vector<std::string> redraws(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' || text[i] == '\n') {
      if (!current.empty()) out.push_back(current);
      current.clear();
    } else if (text.compare(i, 3, "\x1b[K") == 0) {
      i += 2;
    } else {
      current.push_back(text[i]);
    }
  }
  if (!current.empty()) out.push_back(current);
  return out;
}

}  // namespace

TEST_CASE("progress: on a terminal the bar fits its width, and reused options draw each call",
          "[progress]") {
  auto slow_square = [](int x) {
    std::this_thread::sleep_for(1ms);
    return x * x;
  };
  for (const unsigned short columns : {80, 40, 20}) {
    CAPTURE(columns);
    std::vector<int> first;
    std::vector<int> second;
    const std::string text = on_a_terminal(columns, [&] {
      const parallel::options opts{.progress = parallel::progress_bar("squaring")};
      first = parallel::map(slow_square, numbers(300), opts);
      second = parallel::map(parallel::sequential{}, slow_square, numbers(200), opts);
    });
    REQUIRE(first.size() == 300);
    REQUIRE(second.size() == 200);
    INFO("on the terminal:\n" << text);
    const auto lines = redraws(text);
    REQUIRE(lines.size() >= 2);
    for (const auto& line : lines)
      CHECK(parallel::detail::progress_bar_state::columns_of(line) < columns);
    // Each call ends its own bar with a new line; the second one starts over.
    std::size_t ends = 0;
    for (std::size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at + 1))
      ++ends;
    CHECK(ends == 2);
    if (columns >= 40) {
      CHECK(text.find("300/300") != std::string::npos);
      CHECK(text.find("200/200") != std::string::npos);
      CHECK(text.find("100%") != std::string::npos);
    }
  }
}
#endif

TEST_CASE("progress: progress_bar runs with every policy", "[progress]") {
  for_each_policy([](auto policy) {
    const auto out = parallel::map(
        policy, [](int x) { return x; }, numbers(200),
        parallel::options{.progress = parallel::progress_bar()});
    REQUIRE(out.size() == 200);
  });
}
