// The verbs over a function that returns void (Python's pool.map(print_it, xs)): each backend
// runs it as a function returning no_result, and the public verbs turn what comes back into
// nothing: map and starmap return void, imap and imap_unordered a range that yields nothing and
// runs every item when its loop starts (the first exception of a task is thrown from there).
#pragma once

#include <cstddef>
#include <iterator>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "../no_result.hpp"

namespace parallel::detail {

/// map's result as the caller sees it: what run() returns (the vector, made in place: a
/// prvalue all the way, never moved), or nothing for a function returning void.
template <class Run>
auto map_outcome(Run&& run) {
  if constexpr (std::is_same_v<std::invoke_result_t<Run&>, std::vector<no_result>>)
    (void)run();
  else
    return run();
}

/// imap of a function returning void: an empty range whose begin() runs the whole imap.
template <class View>
class drained_imap {
 public:
  explicit drained_imap(View view) : view_(std::move(view)) {}

  class iterator {
   public:
    using value_type = no_result;
    using difference_type = std::ptrdiff_t;
    const no_result& operator*() const noexcept { return none_; }
    iterator& operator++() noexcept { return *this; }
    void operator++(int) noexcept {}
    friend bool operator==(const iterator&, std::default_sentinel_t) noexcept { return true; }

   private:
    static constexpr no_result none_{};
  };

  /// Runs every item (in order of completion, on the backend's workers) and returns the end.
  iterator begin() {
    for (auto it = view_.begin(); it != view_.end(); ++it) {
    }
    return {};
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  View view_;
};

/// imap's range as the caller sees it.
template <class View>
auto imap_outcome(View&& view) {
  using V = std::remove_cvref_t<View>;
  if constexpr (std::is_same_v<typename V::value_type, no_result>)
    return drained_imap<V>(std::forward<View>(view));
  else
    return std::forward<View>(view);
}

}  // namespace parallel::detail
