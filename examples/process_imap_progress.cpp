// process_imap_progress: an ordered imap over parameter "dicts" on worker processes,
// with a tqdm bar, over a list and over a generator.
//
// Mirrors Python's Pool.imap over parameter dicts, wrapped in tqdm:
//
//   def function_to_parallelize(params):
//       param1 = params['param1']
//       param2 = params['param2']
//       result = {}
//       result['sum'] = param1+param2
//       return result
//
//   NCPU = multiprocessing.cpu_count() - 2 if multiprocessing.cpu_count() > 2 else 1
//   X_values = [10,22,35,4,532,12,42,53,23]
//   params = ({'param1': x, 'param2': 15} for x in X_values)
//
//   with multiprocessing.Pool(processes=NCPU) as p:
//       # If you use "generators" for the params list, tqdm will not know the total length of
//       # the array (required for the progress bar), so you have to specify it explicitly
//       MAX_COUNT = len(X_values)
//       for res in tqdm(p.imap(function_to_parallelize, params), total=MAX_COUNT):
//           if res is not None:
//               print(res['sum'])
//
// The workers are processes here: parallel::processes<parallel::start::fork>{.workers = -2} is
// NCPU, "all cores but two, at least one", forked for the call. The parameter dict is a struct
// of two ints: the workers read a list in place (they are forks of this process), and items
// of a generator cross to them as their bytes. The result is the Python dict, a
// std::map<std::string, int>, which comes back through parallel::codec.
//
// A list knows its size, so the bar knows its total. A generator does not: the bar then counts
// without a total, as tqdm does, and Python's `total=MAX_COUNT` becomes a progress
// callback that passes MAX_COUNT on to the bar. The generator is a small range that builds
// each params when imap reads it, as Python's generator expression does (imap_lazy.cpp
// writes one as a std::views::transform). The bar goes to stderr, the sums to stdout, like tqdm.
#include <cstddef>
#include <iostream>
#include <iterator>
#include <map>
#include <parallel/parallel.hpp>
#include <ranges>
#include <string>
#include <vector>

#include "python_style.hpp"

using dict = std::map<std::string, int>;

struct params {
  int param1;
  int param2;
};

dict function_to_parallelize(const params& p) {
  // Returning a dict leaves room for richer results later.
  dict result;
  result["sum"] = p.param1 + p.param2;
  return result;
}

/// `({'param1': x, 'param2': 15} for x in X_values)`: a range of unknown size that makes each
/// params when it is read, and counts how many it has made. Each iterator holds its own
/// position, as a std::views::transform over the list would.
class params_generator {
 public:
  explicit params_generator(const std::vector<int>& x_values) : x_values_(&x_values) {}

  class iterator {
   public:
    using value_type = params;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    explicit iterator(params_generator& g) : g_(&g) {}

    params operator*() const {
      ++g_->made_;
      return params{.param1 = (*g_->x_values_)[next_], .param2 = 15};
    }
    iterator& operator++() {
      ++next_;
      return *this;
    }
    iterator operator++(int) {
      iterator before = *this;
      ++next_;
      return before;
    }
    friend bool operator==(const iterator&, const iterator&) = default;
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    bool at_end() const { return next_ == g_->x_values_->size(); }

    params_generator* g_ = nullptr;
    std::size_t next_ = 0;
  };

  iterator begin() { return iterator(*this); }
  std::default_sentinel_t end() const { return {}; }
  std::size_t made() const { return made_; }

 private:
  const std::vector<int>* x_values_;
  std::size_t made_ = 0;
};
static_assert(std::ranges::forward_range<params_generator> &&
              !std::ranges::sized_range<params_generator>);

/// What a progress callback was told, to check it.
struct progress_log {
  std::size_t calls = 0;
  std::size_t last_done = 0;
  std::size_t last_total = 0;
  bool monotonic = true;

  void record(std::size_t done, std::size_t total) {
    monotonic = monotonic && done >= last_done;
    last_done = done;
    last_total = total;
    ++calls;
  }
};

int main() {
  examples::checker checks;
  const parallel::processes<parallel::start::fork> ncpu{.workers = -2};

  const std::vector<int> x_values{10, 22, 35, 4, 532, 12, 42, 53, 23};
  std::vector<int> expected;
  for (int x : x_values) expected.push_back(x + 15);

  // The params as a list: the bar's total is len(params).
  {
    std::vector<params> param_list;
    for (int x : x_values) param_list.push_back(params{.param1 = x, .param2 = 15});

    std::vector<int> sums;
    for (dict& res : parallel::imap(ncpu, function_to_parallelize, param_list,
                                    {.progress = parallel::progress_bar()})) {
      // `if res is not None`: a C++ result is always there; a throwing task would surface here.
      std::cout << res["sum"] << '\n';
      sums.push_back(res["sum"]);
    }
    checks.equal(sums, expected, "imap over a list yields param1 + param2 for each, in order");
  }

  // The params as a generator, with tqdm's total=MAX_COUNT.
  {
    std::cout << "params as a generator, total=MAX_COUNT\n";
    params_generator generated(x_values);
    const std::size_t max_count = x_values.size();  // MAX_COUNT = len(X_values)
    progress_log told;                              // what imap itself reports
    auto bar = parallel::progress_bar();
    auto tqdm_with_total = [&told, bar, max_count](std::size_t done, std::size_t total) {
      told.record(done, total);
      bar(done, max_count);
    };

    std::vector<int> sums;
    for (dict& res :
         parallel::imap(ncpu, function_to_parallelize, generated, {.progress = tqdm_with_total})) {
      std::cout << res["sum"] << '\n';
      sums.push_back(res["sum"]);
    }
    checks.equal(sums, expected, "imap over a generator yields the same sums, in order");
    checks.equal(generated.made(), x_values.size(), "the generator made each params once");
    checks.that(told.calls > 0 && told.monotonic,
                "progress is called with a non-decreasing done count");
    checks.that(told.last_done == max_count && told.last_total == max_count,
                "the last progress call is (MAX_COUNT, MAX_COUNT): the total is known at the end");
  }

  return checks.exit_code();
}
