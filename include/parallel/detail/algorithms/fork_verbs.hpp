// processes<start::fork>: workers forked for one call, which read the input and f in place,
// copy-on-write; only indices go out and results come back. POSIX only (Windows has no fork):
// process_backends.hpp includes this header where the system has fork (os::has_fork), and
// policy.hpp refuses start::fork elsewhere.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "../../policy.hpp"
#include "../ipc/engine.hpp"
#include "../ipc/worker.hpp"
#include "../no_result.hpp"
#include "../process_platform.hpp"
#include "../start/fork.hpp"
#include "../workers.hpp"
#include "common.hpp"
#include "process_verbs.hpp"
#include "sequential.hpp"

namespace parallel::detail {

// --- processes<start::fork>: workers forked at the call ----------------------------------------

/// Memory kept out of the processes forked while this lives (os::withhold_from_forks).
class withheld_from_forks {
 public:
  explicit withheld_from_forks(std::span<std::byte> memory) noexcept : memory_(memory) {
    os::withhold_from_forks(memory_.data(), memory_.size());
  }
  withheld_from_forks(const withheld_from_forks&) = delete;
  withheld_from_forks& operator=(const withheld_from_forks&) = delete;
  ~withheld_from_forks() { os::share_with_forks(memory_.data(), memory_.size()); }

 private:
  std::span<std::byte> memory_;
};

/// Blocks at least this large come from a fresh mapping of their own (glibc's malloc raises its
/// threshold for that up to 32 MiB, never past it).
inline constexpr std::size_t fresh_mapping_from = std::size_t{32} << 20;

/// The per-call engine of an imap: its workers fork when the first job is posted, after the
/// imap's state exists, so they see the input where the state keeps it.
template <class F, class View>
struct forked_imap_context {
  using iterator = std::ranges::iterator_t<View>;
  using handler = std::function<void(const ipc::task_header&, decoder&, ipc::chunk_output&)>;

  forked_imap_context(F fn, std::size_t workers)
      : f(std::move(fn)),
        eng(ipc::engine::config{.workers = workers,
                                .handshake_timeout = std::chrono::seconds(5),
                                .reuse_arenas = true},
            fork_starter(handle)),
        run(eng) {}

  F f;
  std::optional<iterator> origin;  // set once the state holds the input
  handler handle;
  ipc::engine eng;
  inline_runner run;
};

template <>
struct backend<processes<start::fork>> {
  template <class F, class Range>
  static auto map(const processes<start::fork>& p, F& f, Range& items, const options& opts) {
    using R = unit_if_void_t<map_result_t<F, Range>>;
    require_transferable<R>();
    refuse_in_spawned_child();
    indexed_input<Range> input(items);
    const std::size_t n = input.size();
    if (n == 0) {
      if (opts.progress) opts.progress(0, 0);
      return std::vector<R>{};
    }
    // Runs in the forked workers: f and the input are the caller's, copy-on-write.
    auto handle = [&](const ipc::task_header& t, decoder&, ipc::chunk_output& out) {
      out.run(t.first, t.count, (t.flags & ipc::task_timed) != 0,
              [&](std::uint64_t i) -> decltype(auto) {
                return invoke_or_unit(f, input[static_cast<std::size_t>(i)]);
              });
    };
    ipc::engine eng(ipc::engine::config{.workers = std::min(resolve_workers(p.workers), n),
                                        .handshake_timeout = std::chrono::seconds(5),
                                        .reuse_arenas = true},
                    fork_starter(handle));
    inline_runner run(eng);
    process_map_call<R> call(
        run, n, opts,
        learned_cost_for<std::remove_cvref_t<std::ranges::range_reference_t<Range>>>(f),
        /*split=*/true);
    if (n <= fresh_mapping_from / sizeof(R)) {
      // The result vector is made, zeroed, and kept out of the workers as they fork: the
      // caller's writes to it are then no copy-on-write faults. Made after the fork, it would
      // still come from heap pages the workers share (a vector of the size the last call
      // freed: 98 such faults for 100k ints, ~2 ms here).
      const std::span<std::byte> results = call.make_results();
      const withheld_from_forks kept(results);
      eng.start_workers();
    } else {
      // So large a vector is a fresh mapping (glibc's malloc, past its largest threshold):
      // made after the fork, it is the caller's alone, and its zeroing overlaps their start.
      eng.start_workers();
    }
    return call.run({}, [](ipc::job&, encoder&, std::size_t, std::size_t) {});
  }

  template <bool Ordered, class F, class Range>
  static auto imap(const processes<start::fork>& p, F&& f, Range&& items, const options& opts) {
    using View = held_range<Range>;
    using Fn = std::decay_t<F>;
    using R = unit_if_void_t<sequential_result_t<Fn, View>>;
    using V = std::ranges::range_value_t<View>;
    using context = forked_imap_context<Fn, View>;
    using state = process_imap_state<R, View, Ordered>;
    require_transferable<R>();
    constexpr bool in_place =
        std::ranges::random_access_range<View> && std::ranges::sized_range<View>;

    refuse_in_spawned_child();
    auto ctx = std::make_unique<context>(std::forward<F>(f), resolve_workers(p.workers));
    context* c = ctx.get();
    c->handle = [c](const ipc::task_header& t, decoder& body, ipc::chunk_output& out) {
      const bool timed = (t.flags & ipc::task_timed) != 0;
      if constexpr (in_place) {
        out.run(t.first, t.count, timed, [&](std::uint64_t i) -> decltype(auto) {
          return invoke_or_unit(c->f, (*c->origin)[static_cast<std::ptrdiff_t>(i)]);
        });
      } else {
        out.run(t.first, t.count, timed, [&](std::uint64_t) {
          V item = body.read<V>();
          return invoke_or_unit(c->f, item);
        });
      }
    };
    typename state::filler fill;
    if constexpr (in_place) {
      fill = [](encoder&, typename context::iterator& it, const std::ranges::sentinel_t<View>& end,
                std::size_t want, input_cursor& at) {
        const auto left = static_cast<std::size_t>(end - it);
        at.count = std::min(want, left);
        std::ranges::advance(it, static_cast<std::ptrdiff_t>(at.count));
        at.at_end = it == end;
      };
    } else {
      require_transferable<V>();
      fill = &ship_items<View, V>;
    }
    runner& run = c->run;
    std::unique_ptr<void, void (*)(void*)> keep(
        ctx.release(), [](void* held) { delete static_cast<context*>(held); });
    auto s = std::make_unique<state>(run, View(std::forward<Range>(items)), opts, body_prefix{},
                                     std::move(fill), std::move(keep), learned_cost_for<V>(c->f));
    // The workers index the input from its beginning; a single-pass input is shipped instead,
    // and its begin() must not be called a second time (an istream's reads a value).
    if constexpr (in_place) c->origin = s->origin();
    return imap_view<state>(std::move(s));
  }
};

}  // namespace parallel::detail
