// A raw pointer is an address in this process, meaningless in another: the codec refuses it.
// expected-error: <int ?\*>.*a pointer or reference cannot cross a process boundary
#include <parallel/codec.hpp>

int main() {
  int x = 0;
  parallel::encoder out;
  out.write(&x);
}
