// The four verbs of Python's Pool as free functions: map, starmap, imap, imap_unordered.
// The first argument may be a policy (sequential{}, threads{}, processes<...>{}); without one,
// the verbs run on threads{}. This header only dispatches: each policy's backend does the work.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <ranges>
#include <type_traits>
#include <utility>

#include "detail/algorithms/backends.hpp"
#include "detail/algorithms/void_results.hpp"
#include "policy.hpp"

namespace parallel {

namespace detail {
template <class F>
concept not_a_policy = !execution_policy<F>;
}  // namespace detail

/// Applies f to every item and returns the results in input order (Python's Pool.map).
/// `items` is any input range that ends; random-access ranges are read in place. When f returns
/// void, map runs it for every item and returns void (so do starmap and the pools' map).
///
///     std::vector<int> squares = parallel::map(parallel::threads{}, square, xs);
template <execution_policy Policy, class F, std::ranges::input_range Range>
auto map(const Policy& policy, F&& f, Range&& items, const options& opts = {}) {
  return detail::map_outcome(
      [&] { return detail::backend<std::remove_cvref_t<Policy>>::map(policy, f, items, opts); });
}

template <detail::not_a_policy F, std::ranges::input_range Range>
auto map(F&& f, Range&& items, const options& opts = {}) {
  return parallel::map(threads{}, std::forward<F>(f), std::forward<Range>(items), opts);
}

/// Calls f(a, b, ...) for every tuple (a, b, ...) of the input (Python's Pool.starmap).
///
///     std::vector<int> sums = parallel::starmap(add, std::vector<std::tuple<int, int>>{{1, 2}});
template <execution_policy Policy, class F, std::ranges::input_range Range>
auto starmap(const Policy& policy, F&& f, Range&& items, const options& opts = {}) {
  detail::apply_each<F&> each{f};
  return detail::map_outcome(
      [&] { return detail::backend<std::remove_cvref_t<Policy>>::map(policy, each, items, opts); });
}

template <detail::not_a_policy F, std::ranges::input_range Range>
auto starmap(F&& f, Range&& items, const options& opts = {}) {
  return parallel::starmap(threads{}, std::forward<F>(f), std::forward<Range>(items), opts);
}

/// A lazy range of f(item) in input order, computed ahead by at most options.max_in_flight
/// items (Python's Pool.imap). Works on any input range, single-pass and unbounded ones too
/// (`std::views::istream`, a generator): it is read once, in the calling thread, and moved to
/// item k + 1 only when that item is wanted. Leaving the loop stops the work. When the input
/// itself throws, the results of the items it gave come first, then its exception. The
/// range keeps a copy of f and refers to an lvalue `items`, which must outlive the loop. When f
/// returns void, the range yields nothing: starting the loop runs every item, and throws the
/// first exception of a task (`for (auto&& done : parallel::imap(log_it, xs)) {}`).
///
///     for (auto& r : parallel::imap(fit, params, {.progress = parallel::progress_bar()})) use(r);
template <execution_policy Policy, class F, std::ranges::input_range Range>
auto imap(const Policy& policy, F&& f, Range&& items, const options& opts = {}) {
  return detail::imap_outcome(detail::backend<std::remove_cvref_t<Policy>>::template imap<true>(
      policy, std::forward<F>(f), std::forward<Range>(items), opts));
}

template <detail::not_a_policy F, std::ranges::input_range Range>
auto imap(F&& f, Range&& items, const options& opts = {}) {
  return parallel::imap(threads{}, std::forward<F>(f), std::forward<Range>(items), opts);
}

/// As imap, but yields each result as soon as it is ready (Python's Pool.imap_unordered).
///
///     for (auto& r : parallel::imap_unordered(download, urls)) save(r);
template <execution_policy Policy, class F, std::ranges::input_range Range>
auto imap_unordered(const Policy& policy, F&& f, Range&& items, const options& opts = {}) {
  return detail::imap_outcome(detail::backend<std::remove_cvref_t<Policy>>::template imap<false>(
      policy, std::forward<F>(f), std::forward<Range>(items), opts));
}

template <detail::not_a_policy F, std::ranges::input_range Range>
auto imap_unordered(F&& f, Range&& items, const options& opts = {}) {
  return parallel::imap_unordered(threads{}, std::forward<F>(f), std::forward<Range>(items), opts);
}

}  // namespace parallel
