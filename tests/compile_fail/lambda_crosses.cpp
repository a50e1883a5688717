// A closure is code plus captures: it crosses as a task (by its trampoline), never as a value.
// expected-error: (<lambda\(\)> ?>|\(lambda at [^)]*\)).*this type cannot cross a process boundary
#include <parallel/codec.hpp>

int main() {
  int x = 1;
  auto f = [x] { return x; };
  parallel::encoder out;
  out.write(f);
}
