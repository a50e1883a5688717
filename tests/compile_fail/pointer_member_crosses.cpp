// A trivially copyable aggregate holding a pointer must not cross as bytes (the address would be
// meaningless in the child): the backend's require_transferable names the struct.
// expected-error: <node>.*this type cannot cross a process boundary
#include <parallel/codec.hpp>

struct node {
  int value;
  node* next;
};

int main() { parallel::detail::require_transferable<node>(); }
