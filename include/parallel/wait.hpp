// Waiting on many futures at once (Python's concurrent.futures.as_completed and wait): for thread
// pool, process pool and MPI pool futures alike, with no polling: each future's completion fires
// a hook that wakes the waiter (detail/futures/completion.hpp).
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <chrono>
#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/futures/completion.hpp"
#include "detail/futures/waiting.hpp"
#include "errors.hpp"
#include "future.hpp"

namespace parallel {

/// Yields each future of `futs` as it finishes, first those finished already (Python's
/// concurrent.futures.as_completed), as a `parallel::future<R>&` to call get() on. Futures of
/// thread pools, process pools and MPI pools may be mixed in one range. Empty futures (after
/// get() or then()) are skipped. `futs` must outlive the loop and keep its futures in place.
///
///     for (parallel::future<int>& f : parallel::as_completed(futs)) std::cout << f.get();
template <detail::range_of_futures Range>
auto as_completed(Range&& futs) {
  static_assert(std::is_lvalue_reference_v<Range> || std::ranges::view<std::remove_cvref_t<Range>>,
                "parallel::as_completed: pass a container of futures that outlives the loop (an "
                "lvalue), not a temporary one");
  return detail::completion_range<detail::futures_result_t<Range>>(futs, std::nullopt);
}

/// As as_completed(futs), but the loop throws parallel::timeout_error when a future it still
/// waits for has not finished `timeout` after this call (Python's as_completed(fs, timeout)).
template <detail::range_of_futures Range, class Rep, class Period>
auto as_completed(Range&& futs, std::chrono::duration<Rep, Period> timeout) {
  static_assert(std::is_lvalue_reference_v<Range> || std::ranges::view<std::remove_cvref_t<Range>>,
                "parallel::as_completed: pass a container of futures that outlives the loop (an "
                "lvalue), not a temporary one");
  return detail::completion_range<detail::futures_result_t<Range>>(futs,
                                                                   detail::deadline_after(timeout));
}

/// Waits until one of `futs` is ready (Python's wait(fs, timeout, FIRST_COMPLETED)) and returns
/// its index in `futs`; nullopt when none is ready within `timeout`, or none holds a state.
///
///     if (auto i = parallel::wait_any(futs, std::chrono::seconds(1))) use(futs[*i].get());
template <detail::range_of_futures Range, class Rep, class Period>
std::optional<std::size_t> wait_any(Range&& futs, std::chrono::duration<Rep, Period> timeout) {
  detail::future_set<detail::futures_result_t<Range>> set(futs);
  const detail::deadline_t deadline = detail::deadline_after(timeout);
  return detail::wait_any_until(set, &deadline);
}

/// wait_any without a timeout.
template <detail::range_of_futures Range>
std::optional<std::size_t> wait_any(Range&& futs) {
  detail::future_set<detail::futures_result_t<Range>> set(futs);
  return detail::wait_any_until(set, nullptr);
}

/// Waits until every future of `futs` is ready (Python's wait(fs, timeout, ALL_COMPLETED));
/// false when some are not within `timeout`. Empty futures count as ready.
///
///     if (!parallel::wait_all(futs, std::chrono::seconds(5))) std::cerr << "still running\n";
template <detail::range_of_futures Range, class Rep, class Period>
bool wait_all(Range&& futs, std::chrono::duration<Rep, Period> timeout) {
  detail::future_set<detail::futures_result_t<Range>> set(futs);
  const detail::deadline_t deadline = detail::deadline_after(timeout);
  return detail::wait_all_until(set, &deadline);
}

/// wait_all without a timeout.
template <detail::range_of_futures Range>
bool wait_all(Range&& futs) {
  detail::future_set<detail::futures_result_t<Range>> set(futs);
  return detail::wait_all_until(set, nullptr);
}

}  // namespace parallel
