// pool.submit sends its arguments to a worker process: an argument holding a pointer cannot
// cross, and the error names the argument's type and the fix.
// expected-error: node.*this type cannot cross a process boundary.*specialise parallel::codec
#include <parallel/parallel.hpp>

struct node {
  int value;
  node* next;
};

int sum(const node& n) { return n.value + (n.next != nullptr ? n.next->value : 0); }

int main() {
  parallel::process_pool<parallel::start::fork> pool{{.workers = 1}};
  node tail{2, nullptr};
  node head{1, &tail};
  return pool.submit(sum, head).get();
}
