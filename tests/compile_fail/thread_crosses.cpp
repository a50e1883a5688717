// A std::thread is a handle to a thread of this process: encoder::write must refuse it at compile
// time, naming the type and the fix.
// expected-error: <std::thread>.*cannot cross a process boundary.*specialise parallel::codec
#include <parallel/codec.hpp>
#include <thread>

int main() {
  parallel::encoder out;
  out.write(std::thread{});
}
