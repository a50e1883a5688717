// Progress reporting for the verbs: any (done, total) callable, or a tqdm-style bar on stderr.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "detail/platform.hpp"

namespace parallel {

/// What options.progress holds: off by default, or a callable `(done, total) -> void`.
/// The library calls it from one thread at a time, with non-decreasing `done`; the last call has
/// `done == total`. `total` is 0 while the number of items is unknown (an unsized input).
///
///     parallel::map(f, xs, {.progress = [](std::size_t done, std::size_t total) { ... }});
class progress {
 public:
  progress() = default;

  template <class F>
  requires(!std::same_as<std::remove_cvref_t<F>, progress> &&
           std::invocable<F&, std::size_t, std::size_t>)
      progress(F&& report)  // NOLINT(google-explicit-constructor): options{.progress = lambda}
      : report_(std::forward<F>(report)) {}

  explicit operator bool() const noexcept { return static_cast<bool>(report_); }
  void operator()(std::size_t done, std::size_t total) const { report_(done, total); }

 private:
  std::function<void(std::size_t, std::size_t)> report_;
};

namespace detail {

/// State of one progress bar; formats the tqdm-like line.
class progress_bar_state {
 public:
  explicit progress_bar_state(std::string description)
      : description_(std::move(description)), terminal_(os::stderr_is_terminal()) {}

  void update(std::size_t done, std::size_t total) {
    using clock = std::chrono::steady_clock;
    const auto now = clock::now();
    if (!started_) {
      started_ = true;
      start_ = now;
    }
    const bool last = total != 0 && done >= total;
    // A terminal redraws in place at most ~10 times a second; a log gets a line a second.
    const auto interval = terminal_ ? std::chrono::milliseconds(100) : std::chrono::seconds(1);
    if (!last && drawn_ && now - last_draw_ < interval) return;
    if (last && finished_) return;
    drawn_ = true;
    last_draw_ = now;
    finished_ = last;
    draw(done, total, std::chrono::duration<double>(now - start_).count(), last);
  }

 private:
  static std::string clock_text(double seconds) {
    const auto s = static_cast<long long>(seconds);
    char text[32];
    if (s >= 3600)
      std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else
      std::snprintf(text, sizeof text, "%02lld:%02lld", s / 60, s % 60);
    return text;
  }

  void draw(std::size_t done, std::size_t total, double elapsed, bool last) {
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    std::string line;
    if (!description_.empty()) line += description_ + ": ";
    if (total != 0) {
      const double fraction = static_cast<double>(done) / static_cast<double>(total);
      char head[16];
      std::snprintf(head, sizeof head, "%3d%%|", static_cast<int>(fraction * 100));
      line += head;
      constexpr int width = 25;
      const int eighths = static_cast<int>(fraction * width * 8);
      static const char* const partial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
      for (int i = 0; i < width; ++i) {
        if (i < eighths / 8)
          line += "█";
        else if (i == eighths / 8 && eighths % 8 != 0)
          line += partial[eighths % 8];
        else
          line += ' ';
      }
      line += "| ";
    }
    char rate_text[32] = "?";
    if (rate > 0) std::snprintf(rate_text, sizeof rate_text, "%.2f", rate);
    char tail[160];
    if (total != 0) {
      const std::string left =
          rate > 0 ? clock_text(static_cast<double>(total - done) / rate) : std::string("?");
      std::snprintf(tail, sizeof tail, "%zu/%zu [%s<%s, %sit/s]", done, total,
                    clock_text(elapsed).c_str(), left.c_str(), rate_text);
    } else {
      std::snprintf(tail, sizeof tail, "%zu [%s, %sit/s]", done, clock_text(elapsed).c_str(),
                    rate_text);
    }
    line += tail;
    if (terminal_) {
      std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), last ? "\n" : "");
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }

  std::string description_;
  bool terminal_;
  bool started_ = false;
  bool drawn_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_{};
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace detail

/// A tqdm-style bar on stderr: percent, count, elapsed, ETA and rate, redrawn at most ~10 times a
/// second; when stderr is not a terminal, one plain line per update (at most one a second).
///
///     for (auto& r : parallel::imap(f, params, {.progress = parallel::progress_bar("fit")})) ...
inline progress progress_bar(std::string description = {}) {
  auto state = std::make_shared<detail::progress_bar_state>(std::move(description));
  return progress([state](std::size_t done, std::size_t total) { state->update(done, total); });
}

}  // namespace parallel
