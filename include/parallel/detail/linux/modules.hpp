// Which loaded module (executable or shared library) holds an address, and the reverse: the
// address at an offset of a module named by its path. dl_iterate_phdr walks the program headers
// the dynamic loader keeps; only PT_LOAD segments that are executable count as code.
#pragma once

#include <link.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "../module_span.hpp"

namespace parallel::detail::os {

namespace modules {

struct find_by_address {
  std::uintptr_t address;
  module_span result;
};

inline int by_address(dl_phdr_info* info, std::size_t, void* data) noexcept {
  auto* query = static_cast<find_by_address*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0) continue;
    const std::uintptr_t begin = info->dlpi_addr + segment.p_vaddr;
    if (query->address >= begin && query->address < begin + segment.p_memsz) {
      query->result.found = true;
      // The first object is the main executable (its name is ""), whatever it says.
      query->result.path = info->dlpi_name != nullptr ? info->dlpi_name : "";
      query->result.offset = query->address - info->dlpi_addr;
      return 1;
    }
  }
  return 0;
}

struct find_by_name {
  const std::string* path;
  std::uint64_t offset;
  bool first = true;
  bool module_found = false;
  const void* result = nullptr;
};

inline int by_name(dl_phdr_info* info, std::size_t, void* data) noexcept {
  auto* query = static_cast<find_by_name*>(data);
  const bool is_main = query->first;
  query->first = false;
  const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  if (query->path->empty() ? !is_main : std::strcmp(name, query->path->c_str()) != 0) return 0;
  query->module_found = true;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0) continue;
    if (query->offset >= segment.p_vaddr && query->offset < segment.p_vaddr + segment.p_memsz) {
      query->result = reinterpret_cast<const void*>(info->dlpi_addr + query->offset);
      return 1;
    }
  }
  return 1;  // the module, but no code at that offset
}

}  // namespace modules

/// The module holding the code at `address`, and the address's offset from the module's base.
inline module_span module_of(const void* address) noexcept {
  modules::find_by_address query{reinterpret_cast<std::uintptr_t>(address), {}};
  dl_iterate_phdr(&modules::by_address, &query);
  return query.result;
}

/// The address at `offset` in module `path` ("" = main executable) when that lies inside one of
/// the module's executable segments; nullptr otherwise.
inline const void* address_in_module(const std::string& path, std::uint64_t offset) noexcept {
  modules::find_by_name query{&path, offset};
  dl_iterate_phdr(&modules::by_name, &query);
  return query.result;
}

/// Whether module `path` ("" = main executable) is loaded in this process.
inline bool module_loaded(const std::string& path) noexcept {
  modules::find_by_name query{&path, 0};
  dl_iterate_phdr(&modules::by_name, &query);
  return query.module_found;
}

}  // namespace parallel::detail::os
