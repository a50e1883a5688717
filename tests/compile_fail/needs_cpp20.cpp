// Compiled as C++17, the library stops at its first line with one message that says what to do
// (not pages of errors from its first concept).
// cxx-standard: 17
// expected-error: parallel needs C\+\+20: compile with -std=c\+\+20
#include <parallel/parallel.hpp>
#include <vector>

int main() {
  const std::vector<int> squares = parallel::map([](int x) { return x * x; }, std::vector<int>{3});
  return squares.size() == 1 ? 0 : 1;
}
