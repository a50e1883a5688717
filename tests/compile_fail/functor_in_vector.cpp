// A container of something that cannot cross cannot cross either: codec<std::vector<functor>>
// is not specialised, and the error names the vector of the functor.
// expected-error: <std::vector<adder.*this type cannot cross a process boundary
#include <parallel/codec.hpp>
#include <vector>

struct adder {
  adder(int n) : n_(n) {}
  int operator()(int x) const { return x + n_; }

 private:
  int n_;
};

int main() {
  static_assert(!parallel::transferable<adder>);
  parallel::encoder out;
  out.write(std::vector<adder>{adder{1}});
}
