// What the operating-system layers (linux/modules.hpp, win32/modules.hpp) answer for "which
// module holds this address": the same on every platform, so task identity reads it alike.
#pragma once

#include <cstdint>
#include <string>

namespace parallel::detail::os {

struct module_span {
  bool found = false;
  std::string path;  // "" for the main executable
  std::uint64_t offset = 0;
};

}  // namespace parallel::detail::os
