// A per-thread cache of freed memory blocks of one size. pool.submit allocates one block per task
// (task, arguments and result together); recursive submit/get patterns free and allocate at the
// rate of the tasks themselves, and a thread-local free list turns that into a few loads and
// stores instead of a trip through malloc.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace parallel::detail {

template <std::size_t Size>
class block_cache {
  static_assert(Size >= sizeof(void*) && Size % alignof(std::max_align_t) == 0);
  static constexpr int max_cached = 256;  // per thread; beyond that, blocks go back to malloc

  struct node {
    node* next;
  };
  struct free_list {
    node* head = nullptr;
    int size = 0;
    free_list() = default;
    free_list(const free_list&) = delete;
    free_list& operator=(const free_list&) = delete;
    ~free_list() {
      while (head != nullptr) ::operator delete(std::exchange(head, head->next));
    }
  };

  static free_list& local() noexcept {
    thread_local free_list list;
    return list;
  }

 public:
  static void* allocate() {
    free_list& list = local();
    if (list.head == nullptr) return ::operator new(Size);
    --list.size;
    return std::exchange(list.head, list.head->next);
  }

  static void deallocate(void* block) noexcept {
    free_list& list = local();
    if (list.size >= max_cached) {
      ::operator delete(block);
      return;
    }
    ++list.size;
    list.head = ::new (block) node{list.head};
  }
};

/// The cache size class for objects of `bytes` bytes: a multiple of 64.
constexpr std::size_t block_size_for(std::size_t bytes) noexcept { return (bytes + 63) / 64 * 64; }

}  // namespace parallel::detail
