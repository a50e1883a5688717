// The state of a parallel::progress_bar (progress.hpp): the tqdm-like line it draws on stderr, as
// wide as the terminal is now, at most ~10 times a second.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "platform.hpp"

namespace parallel {

namespace detail {

/// State of one progress bar; formats the tqdm-like line. A bar reused by a later call (the same
/// options passed again) starts over for that call.
class progress_bar_state {
 public:
  explicit progress_bar_state(std::string description)
      : description_(std::move(description)), terminal_(os::stderr_is_terminal()) {}

  void update(std::size_t done, std::size_t total) {
    using clock = std::chrono::steady_clock;
    const auto now = clock::now();
    if (finished_) {  // the last call ended its bar: this is the next call's first report
      started_ = false;
      drawn_ = false;
      finished_ = false;
    }
    if (!started_) {
      started_ = true;
      start_ = now;
    }
    // The last report has done == total; an empty call reports (0, 0) once.
    const bool last = done >= total && (total != 0 || done == 0);
    // A terminal redraws in place at most ~10 times a second; a log gets a line a second.
    const auto interval = terminal_ ? std::chrono::milliseconds(100) : std::chrono::seconds(1);
    if (!last && drawn_ && now - last_draw_ < interval) return;
    drawn_ = true;
    last_draw_ = now;
    finished_ = last;
    draw(done, total, std::chrono::duration<double>(now - start_).count(), last);
  }

  /// Characters a terminal shows for UTF-8 text (one column each; no wide characters here).
  static std::size_t columns_of(const std::string& text) noexcept {
    std::size_t n = 0;
    for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0U) != 0x80U ? 1 : 0;
    return n;
  }

  /// The first `columns` characters of UTF-8 text.
  static std::string first_columns(const std::string& text, std::size_t columns) {
    std::size_t seen = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if ((static_cast<unsigned char>(text[i]) & 0xC0U) == 0x80U) continue;
      if (seen++ == columns) return text.substr(0, i);
    }
    return text;
  }

  /// The line for (done, total) after `elapsed` seconds, at most `columns` characters wide (0:
  /// no limit, and a bar of 25).
  std::string line(std::size_t done, std::size_t total, double elapsed, std::size_t columns) const {
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    const std::string left = description_.empty() ? std::string() : description_ + ": ";
    char rate_text[32] = "?";
    if (rate > 0) std::snprintf(rate_text, sizeof rate_text, "%.2f", rate);
    char tail[160];
    if (total == 0) {
      std::snprintf(tail, sizeof tail, "%zu [%s, %sit/s]", done, clock_text(elapsed).c_str(),
                    rate_text);
      return fit(left + tail, columns);
    }
    const std::string remaining =
        rate > 0 && done <= total ? clock_text(static_cast<double>(total - done) / rate) : "?";
    std::snprintf(tail, sizeof tail, "%zu/%zu [%s<%s, %sit/s]", done, total,
                  clock_text(elapsed).c_str(), remaining.c_str(), rate_text);
    const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
    char percent[16];
    std::snprintf(percent, sizeof percent, "%3d%%", static_cast<int>(fraction * 100));
    // tqdm's layout: the bar takes what the text leaves of the line.
    std::size_t width = 25;
    if (columns != 0) {
      const std::size_t text = columns_of(left) + columns_of(percent) + 3 + columns_of(tail);
      width = columns > text ? columns - text : 0;
    }
    if (width < 4) return fit(left + percent + " " + tail, columns);  // no room for a bar
    std::string bar = left + percent + "|";
    const auto eighths = static_cast<std::size_t>(fraction * static_cast<double>(width) * 8);
    static const char* const partial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    for (std::size_t i = 0; i < width; ++i) {
      if (i < eighths / 8)
        bar += "█";
      else if (i == eighths / 8 && eighths % 8 != 0)
        bar += partial[eighths % 8];
      else
        bar += ' ';
    }
    return fit(bar + "| " + tail, columns);
  }

 private:
  static std::string fit(const std::string& text, std::size_t columns) {
    return columns == 0 ? text : first_columns(text, columns);
  }

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
    if (terminal_) {
      // One column short of the width: a line that fills it makes some terminals wrap, and every
      // redraw would then start a new line.
      const std::size_t columns = std::max<std::size_t>(os::stderr_columns(), 2) - 1;
      std::fprintf(stderr, "\r%s\033[K%s", line(done, total, elapsed, columns).c_str(),
                   last ? "\n" : "");
    } else {
      std::fprintf(stderr, "%s\n", line(done, total, elapsed, 0).c_str());
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

}  // namespace parallel
