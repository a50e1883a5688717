// A user struct that is not trivially copyable (it holds a std::string) and has no codec: decoding
// it must fail to compile, naming the type and how to fix it.
// expected-error: <person>.*cannot cross.*specialise parallel::codec<T> with encode/decode
#include <cstddef>
#include <parallel/codec.hpp>
#include <span>
#include <string>

struct person {
  std::string name;
  int age;
};

int main() {
  parallel::decoder in{std::span<const std::byte>{}};
  static_cast<void>(in.read<person>());
}
