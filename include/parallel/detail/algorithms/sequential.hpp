// parallel::sequential: the verbs as plain loops in the calling thread, with the same results,
// exceptions and progress calls as the pooled backends. The baseline and the debugging aid.
#pragma once

#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../policy.hpp"
#include "../no_result.hpp"
#include "common.hpp"

namespace parallel::detail {

template <class F, class Range>
using sequential_result_t =
    std::remove_cvref_t<std::invoke_result_t<F&, std::ranges::range_reference_t<Range>>>;

template <class Range>
std::size_t known_size(Range& items) {
  if constexpr (std::ranges::sized_range<Range>)
    return static_cast<std::size_t>(std::ranges::size(items));
  else
    return 0;
}

template <class R, class F, class Range>
std::vector<R> map_sequential_values(F& f, Range& items, const options& opts) {
  std::vector<R> out;
  const std::size_t total = known_size(items);
  reserve_results(out, total);
  for (auto&& item : items) {
    out.push_back(std::invoke(f, std::forward<decltype(item)>(item)));
    if (opts.progress) opts.progress(out.size(), total);
  }
  if (opts.progress && (out.empty() || total != out.size())) opts.progress(out.size(), out.size());
  return out;
}

template <class F, class Range>
auto map_sequential(F& f, Range& items, const options& opts) {
  using R = sequential_result_t<F, Range>;
  if constexpr (std::is_void_v<R>) {
    unit_returning<F&> g{f};
    return map_sequential(g, items, opts);
  } else {
    return map_sequential_values<R>(f, items, opts);
  }
}

/// imap on parallel::sequential: computes each result when the loop asks for it.
template <class F, class View>
class sequential_imap {
 public:
  using value_type = sequential_result_t<F, View>;

  sequential_imap(F f, View items, options opts)
      : f_(std::move(f)), items_(std::move(items)), opts_(std::move(opts)) {}

  class iterator {
   public:
    using value_type = sequential_imap::value_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(sequential_imap* owner) : owner_(owner) {}
    value_type& operator*() const { return *owner_->current_; }
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.owner_ == nullptr || it.owner_->at_end();
    }

   private:
    sequential_imap* owner_ = nullptr;
  };

  iterator begin() {
    position_.emplace(std::ranges::begin(items_));
    total_ = known_size(items_);
    compute();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }
  bool at_end() const noexcept { return !current_; }

 private:
  void compute() {
    current_.reset();
    if (*position_ == std::ranges::end(items_)) {
      if (opts_.progress && (done_ == 0 || total_ != done_)) opts_.progress(done_, done_);
      return;
    }
    current_.emplace(std::invoke(f_, **position_));
    ++done_;
    if (opts_.progress) opts_.progress(done_, total_);
  }
  void advance() {
    ++*position_;
    compute();
  }

  F f_;
  View items_;
  options opts_;
  // Set by begin(): an input iterator may be move-only and without a default constructor.
  std::optional<std::ranges::iterator_t<View>> position_;
  std::optional<value_type> current_;
  std::size_t total_ = 0;
  std::size_t done_ = 0;
};

}  // namespace parallel::detail
