// An aggregate crosses member by member on its own, but not one with a base class (a structured
// binding cannot reach the base's members): with no codec, decoding it must fail to compile,
// naming the type and how to fix it.
// expected-error: <person>.*cannot cross.*specialise parallel::codec<T> with encode/decode
#include <cstddef>
#include <parallel/codec.hpp>
#include <span>
#include <string>

struct named {
  std::string name;
};

struct person : named {
  int age;
};

int main() {
  parallel::decoder in{std::span<const std::byte>{}};
  static_cast<void>(in.read<person>());
}
