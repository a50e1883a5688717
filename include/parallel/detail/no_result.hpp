// What a function that returns void "returns" inside the library: parallel::map of such a
// function runs it for every item and returns nothing, submit gives a future<void>. The
// backends carry no_result where a value would be, so each keeps one code path; on the wire it
// is one byte (bitwise), which is what a future<void> of a process pool reads.
#pragma once

#include <functional>
#include <type_traits>
#include <utility>

namespace parallel::detail {

struct no_result {};

template <class T>
using unit_if_void_t = std::conditional_t<std::is_void_v<T>, no_result, T>;

/// std::invoke, with no_result in place of void.
template <class F, class... Args>
decltype(auto) invoke_or_unit(F&& f, Args&&... args) {
  if constexpr (std::is_void_v<std::invoke_result_t<F, Args...>>) {
    std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
    return no_result{};
  } else {
    return std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
  }
}

/// f, returning no_result where f returns void: for the backends that call f in this process
/// (sequential, threads, fork), which then need no void case of their own.
template <class F>
struct unit_returning {
  static constexpr bool wraps_f = true;  // callable_identity looks through it to f
  F f;
  template <class... Args>
  decltype(auto) operator()(Args&&... args) {
    return invoke_or_unit(f, std::forward<Args>(args)...);
  }
};

}  // namespace parallel::detail
