// Progress reporting for the verbs: any (done, total) callable, or a tqdm-style bar on stderr.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "detail/progress_bar.hpp"

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

/// A tqdm-style bar on stderr: percent, count, elapsed, ETA and rate, redrawn in place at most
/// ~10 times a second and as wide as the terminal is now (the bar takes what the text leaves);
/// when stderr is not a terminal, one plain line per update (at most one a second). Options that
/// hold it may be passed to several calls in turn: each call gets its own bar.
///
///     for (auto& r : parallel::imap(f, params, {.progress = parallel::progress_bar("fit")})) ...
inline progress progress_bar(std::string description = {}) {
  auto state = std::make_shared<detail::progress_bar_state>(std::move(description));
  return progress([state](std::size_t done, std::size_t total) { state->update(done, total); });
}

}  // namespace parallel
