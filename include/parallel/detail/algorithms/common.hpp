// Pieces every backend's verbs share: reading the input by index, storing results out of order,
// capturing the first failure, and reporting progress from many threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../policy.hpp"
#include "../platform.hpp"

namespace parallel::detail {

/// A std::function: one type for every function of its signature, so its type says nothing of
/// which function it holds (a cost learned for one must not be taken for another).
template <class F>
inline constexpr bool is_std_function = false;
template <class R, class... A>
inline constexpr bool is_std_function<std::function<R(A...)>> = true;

/// Which function a callable stands for, as far as it can be told cheaply (never 0 for one that
/// can be told): a cost measured for one function must not steer the calls of another of the same
/// type. A lambda's captures are in its bytes (`[rounds](auto x) { return spin(x, rounds); }` at
/// 1 ns and at 1 ms), and so is a function pointer's target (every `int (*)(int)`); those are
/// hashed. A type of no state, or a function object that cannot be copied bitwise, is one
/// function. 0 for std::function, which can hold any function: its cost is never taken as known.
/// (What a capture by reference points at may change under the same bytes: not seen here.)
template <class F>
std::uint64_t callable_identity(const F& f) noexcept {
  using T = std::remove_cvref_t<F>;
  if constexpr (requires { T::wraps_f; }) {  // the library's own wrappers (starmap, void f)
    return callable_identity(f.f);
  } else if constexpr (std::is_function_v<T>) {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&f)) | 1;
  } else if constexpr (is_std_function<T>) {
    return 0;
  } else if constexpr (std::is_empty_v<T> || !std::is_trivially_copyable_v<T> || sizeof(T) > 64) {
    return 1;
  } else {
    std::uint64_t words[(sizeof(T) + 7) / 8] = {};
    std::memcpy(words, std::addressof(f), sizeof(T));
    std::uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (const std::uint64_t w : words) h = (h ^ w) * 0xff51afd7ed558ccdULL;
    return (h ^ (h >> 32)) | 1;
  }
}

/// The input of map, addressable by index. Random-access sized ranges are read in place (never
/// copied); other forward ranges through a table of iterators; single-pass ranges are drained
/// into a vector once, in the calling thread.
template <class Range>
class indexed_input {
  using iterator = std::ranges::iterator_t<Range>;
  using reference = std::ranges::range_reference_t<Range>;
  static constexpr bool in_place =
      std::ranges::random_access_range<Range> && std::ranges::sized_range<Range>;
  static constexpr bool by_iterator = !in_place && std::ranges::forward_range<Range>;
  using value = std::ranges::range_value_t<Range>;
  using storage = std::conditional_t<
      in_place, iterator,
      std::conditional_t<by_iterator, std::vector<iterator>, std::vector<value>>>;

 public:
  explicit indexed_input(Range& items) {
    if constexpr (in_place) {
      data_ = std::ranges::begin(items);
      size_ = static_cast<std::size_t>(std::ranges::size(items));
    } else {
      if constexpr (std::ranges::sized_range<Range>)
        data_.reserve(static_cast<std::size_t>(std::ranges::size(items)));
      for (auto it = std::ranges::begin(items); it != std::ranges::end(items); ++it) {
        if constexpr (by_iterator)
          data_.push_back(it);
        else
          data_.push_back(*it);
      }
      size_ = data_.size();
    }
  }

  std::size_t size() const noexcept { return size_; }

  /// Calls g(i, item i) for i in [first, last), the items as operator[] gives them. An in-place
  /// input is walked from a local copy of its first iterator: through operator[] a loop read the
  /// iterator back from this object after every store of a pointer (the results vector's end,
  /// or a result that holds one), which the compiler cannot tell from it: 15% of a plain loop
  /// of 1000 cheap items.
  template <class G>
  void each(std::size_t first, std::size_t last, G&& g) {
    if constexpr (in_place) {
      const iterator start = data_;
      for (std::size_t i = first; i < last; ++i)
        g(i, start[static_cast<std::iter_difference_t<iterator>>(i)]);
    } else {
      for (std::size_t i = first; i < last; ++i) g(i, (*this)[i]);
    }
  }

  /// What f receives for item i: the range's own reference type. Each index is read once, so a
  /// drained single-pass input hands its values over by move.
  decltype(auto) operator[](std::size_t i) {
    if constexpr (in_place) {
      return data_[static_cast<std::iter_difference_t<iterator>>(i)];
    } else if constexpr (by_iterator) {
      return *data_[i];
    } else if constexpr (std::is_lvalue_reference_v<reference>) {
      return static_cast<value&>(data_[i]);
    } else {
      return static_cast<value&&>(data_[i]);
    }
  }

 private:
  storage data_{};
  std::size_t size_ = 0;
};

/// What imap keeps of its input: a reference to an lvalue range (which must outlive the loop)
/// or the moved-in rvalue range itself. A range of its own rather than std::views::all_t, which
/// clang 14 cannot compile with libstdc++ 12.
template <class Range>
class held_range {
  using range = std::remove_cvref_t<Range>;
  static constexpr bool by_reference = std::is_lvalue_reference_v<Range>;
  using stored = std::conditional_t<by_reference, std::remove_reference_t<Range>*, range>;

 public:
  explicit held_range(Range&& items) : items_(hold(std::forward<Range>(items))) {}

  auto begin() { return std::ranges::begin(get()); }
  auto end() { return std::ranges::end(get()); }
  auto size() requires std::ranges::sized_range<std::remove_reference_t<Range>> {
    return std::ranges::size(get());
  }

 private:
  static stored hold(Range&& items) {
    if constexpr (by_reference)
      return &items;
    else
      return std::move(items);
  }
  decltype(auto) get() {
    if constexpr (by_reference)
      return *items_;
    else
      return (items_);
  }

  stored items_;
};

template <class F, class Range>
using map_result_t = std::remove_cvref_t<
    std::invoke_result_t<F&, decltype(std::declval<indexed_input<Range>&>()[0])>>;

/// How reserve_results made ready the memory of its results.
enum class reserved_as {
  plain,       // reserved only: small, its pages may well be warm
  mapped_in,   // 256 KiB to 1 MiB, in 4 KiB pages mapped in ahead (MADV_POPULATE_WRITE)
  huge_pages,  // over 1 MiB: whole huge pages, where the system offers them
};

/// Reserves room for n results. A vector of over a MiB gets a whole number of huge pages
/// (its capacity rounded up: os::whole_huge_pages_request) and is backed by them where the system
/// offers them; a middling one is mapped in at once. Its first touch (the zero-fill of the
/// vector's constructor, or the writes of a loop) is then a fraction of its cost with a page
/// fault per 4 KiB (400 KB of ints: 98 faults, ~1.2 ms here, against one call of ~0.1 ms).
template <class R>
reserved_as reserve_results(std::vector<R>& out, std::size_t n) {
  constexpr std::size_t huge_from = std::size_t{1} << 20;
  constexpr std::size_t map_in_from = std::size_t{256} << 10;
  if (n > huge_from / sizeof(R) && n <= out.max_size()) {
    out.reserve(os::whole_huge_pages_request(n * sizeof(R)) / sizeof(R));  // at least n
    os::prepare_large_write(out.data(), n * sizeof(R));
    return reserved_as::huge_pages;
  }
  out.reserve(n);
  if (n < map_in_from / sizeof(R)) return reserved_as::plain;
  os::populate_for_write(out.data(), n * sizeof(R));
  return reserved_as::mapped_in;
}

/// Writes a byte of each 4 KiB of `memory` (and its last byte): the first touch of memory that
/// holds no objects yet, which on this VM is most of the cost of a first write even to pages
/// mapped in ahead (the host maps each page at its first touch).
inline void touch_pages(std::span<std::byte> memory) noexcept {
  if (memory.empty()) return;
  volatile std::byte* p = memory.data();
  for (std::size_t i = 0; i < memory.size(); i += 4096) p[i] = std::byte{0};
  p[memory.size() - 1] = std::byte{0};
}

/// Whether a result_slots is ready for writes when made, or only has its memory reserved: then
/// whoever made it may touch that memory first (untouched()), and calls open() before the first
/// write.
enum class slots_start { open, reserved };

/// Whether results of type R are written by index into a value-initialised std::vector<R>
/// (else built in raw storage, or appended). Not bool: std::vector<bool> packs bits, and
/// neighbouring results must not be written by two threads.
template <class R>
inline constexpr bool written_in_place =
    !std::is_same_v<R, bool> && std::is_default_constructible_v<R> && std::is_move_assignable_v<R>;

/// Results written by index from many threads, handed back as a std::vector<R>. Default
/// constructible results go straight into the vector; others (move-only without a default,
/// say) are built in raw storage and moved over at the end.
template <class R>
class result_slots {
  static constexpr bool direct = written_in_place<R>;

 public:
  explicit result_slots(std::size_t n, slots_start start = slots_start::open) : size_(n) {
    if constexpr (direct) {
      reserved_ = reserve_results(values_, n);
      if (start == slots_start::open) open();
    } else {
      raw_ = std::allocator<R>{}.allocate(n);
      built_.assign(n, 0);
    }
  }
  result_slots(const result_slots&) = delete;
  result_slots& operator=(const result_slots&) = delete;
  ~result_slots() {
    if constexpr (!direct) {
      for (std::size_t i = 0; i < size_; ++i)
        if (built_[i] != 0) std::destroy_at(raw_ + i);
      std::allocator<R>{}.deallocate(raw_, size_);
    }
  }

  /// The memory of slots made reserved and not opened yet, when it was mapped in ahead in 4 KiB
  /// pages (reserved_as::mapped_in): its first touch may be shared among threads. Empty
  /// otherwise (huge pages, small or raw storage, or opened).
  std::span<std::byte> untouched() noexcept {
    if constexpr (direct) {
      if (reserved_ == reserved_as::mapped_in && values_.size() != size_)
        return {reinterpret_cast<std::byte*>(values_.data()), size_ * sizeof(R)};
    }
    return {};
  }

  /// Value-initialises the slots of a result_slots made reserved: once, on one thread, before
  /// any write (the threads that write the slots afterwards need a happens-before with it).
  void open() {
    if constexpr (direct) {
      if (values_.size() != size_) values_.resize(size_);
    }
  }

  /// Stores f(input[i]) into slot i for i in [first, last).
  template <class F, class Input>
  void fill(F& f, Input& input, std::size_t first, std::size_t last) {
    if constexpr (direct) {
      R* out = values_.data();
      input.each(first, last, [out, &f](std::size_t i, auto&& item) {
        out[i] = std::invoke(f, std::forward<decltype(item)>(item));
      });
    } else {
      input.each(first, last, [this, &f](std::size_t i, auto&& item) {
        std::construct_at(raw_ + i, std::invoke(f, std::forward<decltype(item)>(item)));
        built_[i] = 1;
      });
    }
  }

  /// Stores slots [first, first + k) from a block of k values encoded as bytes (only for a
  /// type that crosses as its bytes, codec.hpp's crosses_as_bytes<R>, which the process
  /// backends check before they call it).
  void put_block(std::size_t first, std::size_t k, const std::byte* block) noexcept {
    static_assert(std::is_trivially_copyable_v<R>);
    if (k == 0) return;
    if constexpr (direct) {
      std::memcpy(static_cast<void*>(values_.data() + first), block, k * sizeof(R));
    } else {
      // Trivially copyable: the bytes are the objects (implicit lifetime).
      std::memcpy(static_cast<void*>(raw_ + first), block, k * sizeof(R));
      std::fill(built_.begin() + static_cast<std::ptrdiff_t>(first),
                built_.begin() + static_cast<std::ptrdiff_t>(first + k), 1);
    }
  }

  /// Stores a ready value into slot i.
  void put(std::size_t i, R&& value) {
    if constexpr (direct) {
      values_[i] = std::move(value);
    } else {
      std::construct_at(raw_ + i, std::move(value));
      built_[i] = 1;
    }
  }

  /// Where the slots are: the vector's elements, or the raw storage.
  std::span<std::byte> memory() noexcept {
    R* first = nullptr;
    if constexpr (direct) {
      first = values_.data();
    } else {
      first = raw_;
    }
    return {reinterpret_cast<std::byte*>(first), size_ * sizeof(R)};
  }

  std::vector<R> take() {
    if constexpr (direct) {
      return std::move(values_);
    } else {
      std::vector<R> out;
      out.reserve(size_);
      for (std::size_t i = 0; i < size_; ++i) {
        out.push_back(std::move(raw_[i]));
        std::destroy_at(raw_ + i);
        built_[i] = 0;
      }
      return out;
    }
  }

 private:
  std::size_t size_;
  std::vector<R> values_;
  reserved_as reserved_ = reserved_as::plain;
  R* raw_ = nullptr;
  std::vector<unsigned char> built_;
};

/// Keeps the first exception thrown by any task; later tasks see failed() and skip their work.
class first_failure {
 public:
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  void capture() noexcept {
    if (!failed_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
  }
  /// Caller only, after every task has finished.
  void rethrow_if_failed() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

/// Funnels progress from many threads into the user's callable: one caller at a time (a
/// try-lock; a busy reporter skips, the next one reports the newer count), done non-decreasing.
class progress_reporter {
 public:
  progress_reporter(const progress& report, std::size_t total) : report_(report), total_(total) {}

  bool enabled() const noexcept { return static_cast<bool>(report_); }

  void add(std::size_t finished) {
    const std::size_t now = done_.fetch_add(finished, std::memory_order_relaxed) + finished;
    if (busy_.exchange(true, std::memory_order_acquire)) return;
    const std::size_t latest = std::max(now, done_.load(std::memory_order_relaxed));
    if (latest > reported_) {
      reported_ = latest;
      try {
        report_(latest, total_);
      } catch (...) {
        busy_.store(false, std::memory_order_release);
        throw;
      }
    }
    busy_.store(false, std::memory_order_release);
  }

  /// Caller only, after every task has finished: the last call, with done == total.
  void finish() {
    if (enabled() && reported_ != total_) report_(total_, total_);
  }

 private:
  const progress& report_;
  std::size_t total_;
  std::atomic<std::size_t> done_{0};
  std::atomic<bool> busy_{false};
  std::size_t reported_ = 0;  // guarded by busy_
};

}  // namespace parallel::detail
