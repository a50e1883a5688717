// What every consumer project builds: one include, one target, one call. It returns non-zero
// when the result is wrong, so ctest sees a broken library and not only a broken build.
#include <cstdio>
#include <parallel/parallel.hpp>
#include <vector>

int main() {
  const std::vector<int> xs{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const auto square = [](int x) { return x * x; };

  const std::vector<int> squares = parallel::map(square, xs);

  const std::vector<int> expected{1, 4, 9, 16, 25, 36, 49, 64, 81, 100};
  if (squares != expected) {
    std::fputs("consumer: parallel::map(square, xs) returned the wrong values\n", stderr);
    return 1;
  }
  std::puts("consumer: parallel::map(square, xs) is right");
  return 0;
}
