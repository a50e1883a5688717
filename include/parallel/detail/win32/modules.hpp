// Which loaded module (the executable or a DLL) holds an address, and the reverse: the address
// at an offset of a module named by its path. GetModuleHandleExW finds the module of an address;
// the module's own PE section table says which offsets are code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "../module_span.hpp"
#include "process.hpp"

namespace parallel::detail::os {

namespace modules {

/// True when `offset` (from the module's base) lies inside one of its executable sections.
inline bool is_code(HMODULE module, std::uint64_t offset) noexcept {
  const auto* base = reinterpret_cast<const std::byte*>(module);
  const auto* dos = reinterpret_cast<const IMAGE_DOS_HEADER*>(base);
  if (dos->e_magic != IMAGE_DOS_SIGNATURE) return false;
  const auto* nt = reinterpret_cast<const IMAGE_NT_HEADERS*>(base + dos->e_lfanew);
  if (nt->Signature != IMAGE_NT_SIGNATURE) return false;
  const IMAGE_SECTION_HEADER* section = IMAGE_FIRST_SECTION(nt);
  for (WORD i = 0; i < nt->FileHeader.NumberOfSections; ++i, ++section) {
    if ((section->Characteristics & IMAGE_SCN_MEM_EXECUTE) == 0) continue;
    const std::uint64_t begin = section->VirtualAddress;
    const std::uint64_t size =
        section->Misc.VirtualSize != 0 ? section->Misc.VirtualSize : section->SizeOfRawData;
    if (offset >= begin && offset < begin + size) return true;
  }
  return false;
}

inline HMODULE loaded(const std::string& path) noexcept {
  if (path.empty()) return ::GetModuleHandleW(nullptr);
  return ::GetModuleHandleW(widen(path).c_str());
}

}  // namespace modules

/// The module holding the code at `address`, and the address's offset from the module's base.
inline module_span module_of(const void* address) noexcept {
  HMODULE module = nullptr;
  if (!::GetModuleHandleExW(
          GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
          static_cast<LPCWSTR>(address), &module))
    return {};
  const std::uint64_t offset =
      reinterpret_cast<std::uintptr_t>(address) - reinterpret_cast<std::uintptr_t>(module);
  if (!modules::is_code(module, offset)) return {};
  module_span span{true, {}, offset};
  if (module != ::GetModuleHandleW(nullptr)) {
    try {
      span.path = narrow(module_path(module));
    } catch (...) {
      return {};
    }
  }
  return span;
}

/// The address at `offset` in module `path` ("" = main executable) when that lies inside one of
/// the module's executable sections; nullptr otherwise.
inline const void* address_in_module(const std::string& path, std::uint64_t offset) noexcept {
  HMODULE module = modules::loaded(path);
  if (module == nullptr || !modules::is_code(module, offset)) return nullptr;
  return reinterpret_cast<const std::byte*>(module) + offset;
}

/// Whether module `path` ("" = main executable) is loaded in this process.
inline bool module_loaded(const std::string& path) noexcept {
  return modules::loaded(path) != nullptr;
}

}  // namespace parallel::detail::os
