// Small helpers shared by the examples so they print like the Python programs they mirror
// ("[0, 1, 4, 9]", "Elapsed: 2.180675") and can check their own results. Not part of the
// library: a user of `parallel` never needs this header.
#pragma once

#include <chrono>
#include <cstddef>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace examples {

/// Formats a vector the way Python prints a list: `[0, 1, 4, 9]`. With `max_shown`, a long
/// list keeps its first and last items: `[1, 8, 27, ..., 997002999]`.
template <class T>
std::string py_list(const std::vector<T>& xs, std::size_t max_shown = 0) {
  std::ostringstream out;
  out << '[';
  const bool elide = max_shown != 0 && xs.size() > max_shown;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (i != 0) out << ", ";
    if (elide && i + 1 == max_shown) {
      out << "..., " << xs.back();
      break;
    }
    out << xs[i];
  }
  out << ']';
  return out.str();
}

/// Python's `range(start, stop)` as a list. (std::views::iota(start, stop) works as well with
/// every verb; these examples use vectors because clang 14 cannot compile libstdc++ 12's views,
/// see imap_lazy.cpp.)
inline std::vector<int> range(int start, int stop) {
  std::vector<int> xs(static_cast<std::size_t>(stop > start ? stop - start : 0));
  std::iota(xs.begin(), xs.end(), start);
  return xs;
}
inline std::vector<int> range(int stop) { return range(0, stop); }

/// Python's `started_at = time.time()` ... `finished_at - started_at` pair.
class stopwatch {
 public:
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  }
  /// Prints `Elapsed: 2.180675` (Python's `f"{x:f}"`) and returns the seconds printed.
  double print_elapsed() const {
    const double s = seconds();
    const auto flags = std::cout.flags();
    const auto precision = std::cout.precision();
    std::cout << "Elapsed: " << std::fixed << std::setprecision(6) << s << '\n';
    std::cout.flags(flags);
    std::cout.precision(precision);
    return s;
  }

 private:
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
};

/// Records failed checks; `main` returns `checks.exit_code()` so ctest sees a regression.
class checker {
 public:
  template <class T>
  void equal(const T& got, const T& want, std::string_view what) {
    if (!(got == want)) fail(what);
  }
  void that(bool ok, std::string_view what) {
    if (!ok) fail(what);
  }
  int exit_code() const { return failures_ == 0 ? 0 : 1; }

 private:
  void fail(std::string_view what) {
    ++failures_;
    std::cerr << "CHECK FAILED: " << what << '\n';
  }
  int failures_ = 0;
};

}  // namespace examples
