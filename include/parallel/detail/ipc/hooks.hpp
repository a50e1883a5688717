// A process pool's hooks: the calls each worker makes once before its first task (the pool's
// initializer, Python's initializer + initargs) and once after its last (on_exit). A hook
// crosses as a task does: the location of a trampoline instantiated for (F, argument tuple), the
// function (encode_callable) and its arguments (the codec). The caller packs both hooks once,
// and every worker finds them in the memory it shares with its caller (arena.hpp), so they reach
// a worker the same way whether it was forked, started by the forkserver or spawned, whatever
// their size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "identity.hpp"
#include "worker.hpp"

namespace parallel::detail {

/// A C string argument of submit (or of a hook) crosses as its characters, and reaches f as
/// whichever of const char*, std::string or std::string_view it takes (a pointer alone could not
/// cross).
struct c_string_arg {
  std::string text;
  operator const char*() const noexcept { return text.c_str(); }  // NOLINT
  operator const std::string&() const noexcept { return text; }   // NOLINT
  operator std::string_view() const noexcept { return text; }     // NOLINT
};

template <class T>
using shipped_arg_t = std::conditional_t<std::is_same_v<std::decay_t<T>, const char*> ||
                                             std::is_same_v<std::decay_t<T>, char*>,
                                         c_string_arg, std::decay_t<T>>;

}  // namespace parallel::detail

namespace parallel {

template <>
struct codec<detail::c_string_arg> {
  static void encode(encoder& out, const detail::c_string_arg& arg) { out.write(arg.text); }
  static detail::c_string_arg decode(decoder& in) { return {in.read<std::string>()}; }
};

}  // namespace parallel

namespace parallel::detail::ipc {

/// A worker's side of one hook: decode f and its arguments, call.
template <class Fn, class Tuple>
void run_hook_call(decoder& in) {
  Fn fn = decode_callable<Fn>(in);
  Tuple args = in.read<Tuple>();
  std::apply([&fn](auto&... a) { std::invoke(fn, a...); }, args);
}

/// The bytes of the call fn(args...), as a worker decodes and runs them (worker.hpp's
/// run_hook).
template <class Fn, class Tuple>
std::vector<std::byte> encode_hook(const Fn& fn, const Tuple& args) {
  std::vector<std::byte> call;
  encoder out(call);
  encode_location(out, trampoline_location<&run_hook_call<Fn, Tuple>>());
  encode_callable(out, fn);
  out.write(args);
  return call;
}

/// Both hooks as one block (what the arena carries): the initializer's length, the
/// initializer, then on_exit. Empty when there is neither.
inline std::vector<std::byte> pack_hooks(std::span<const std::byte> init,
                                         std::span<const std::byte> exit) {
  if (init.empty() && exit.empty()) return {};
  std::vector<std::byte> block(sizeof(std::uint64_t) + init.size() + exit.size());
  const std::uint64_t length = init.size();
  std::memcpy(block.data(), &length, sizeof length);
  if (!init.empty()) std::memcpy(block.data() + sizeof length, init.data(), init.size());
  if (!exit.empty())
    std::memcpy(block.data() + sizeof length + init.size(), exit.data(), exit.size());
  return block;
}

}  // namespace parallel::detail::ipc
