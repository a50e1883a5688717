// Task identity: which code a worker process must run, as (module, offset from the module's
// load address). Every worker runs the same executable (forked, spawned or an MPI rank), so the
// offset finds the same machine code there without any registration; the module is named by
// its path ("" for the main executable). Only detail/posix and detail/win32 know how modules are
// found.
#pragma once

#include <cstdint>
#include <string>

#include "../../codec.hpp"
#include "../../errors.hpp"
#include "../process_platform.hpp"
#include "frame.hpp"

namespace parallel::detail::ipc {

/// Where a function lives, in a form that means the same in every process of this executable.
struct code_location {
  std::string module;  // "" = the main executable
  std::uint64_t offset = 0;

  friend bool operator==(const code_location&, const code_location&) = default;
};

inline void encode_location(encoder& out, const code_location& where) {
  out.write(where.module);
  out.write(where.offset);
}

inline code_location decode_location(decoder& in) {
  code_location where;
  where.module = in.read<std::string>();
  where.offset = in.read<std::uint64_t>();
  return where;
}

/// The location of the code at `address` in this process. Throws parallel::error when the
/// address is in no loaded module (code made at run time cannot be named in another process).
inline code_location locate(const void* address) {
  const os::module_span found = os::module_of(address);
  if (!found.found) {
    throw parallel::error(
        "parallel: a task's function is not in any loaded module (generated at run time?), so "
        "it cannot be named in a worker process");
  }
  return {found.path, found.offset};
}

/// The address of the code at `where` in this process, checked to lie inside an executable
/// segment of that module: a location from a corrupted frame is an error, never a jump. Code in
/// a shared library this process has not loaded (the caller opened it with dlopen after this
/// worker started) is a parallel::spawn_error that says so; the caller gets it as is.
inline const void* resolve(const code_location& where) {
  const void* address = os::address_in_module(where.module, where.offset);
  if (address == nullptr && !where.module.empty() && !os::module_loaded(where.module)) {
    throw parallel::spawn_error(
        "parallel: the task's code is in the shared library '" + where.module +
        "', which the worker process has not loaded (it was opened with dlopen after the "
        "workers started?); link the program with it, or load it before starting the pool "
        "(fork workers started after the dlopen have it)");
  }
  if (address == nullptr) {
    wire::protocol_error("no code at offset " + wire::hex(where.offset) + " of module '" +
                         (where.module.empty() ? std::string("<main executable>") : where.module) +
                         "' in this process (different executable, or a library that is not "
                         "loaded here)");
  }
  return address;
}

/// The location of a fixed function of the library: parent and worker compare theirs in the
/// handshake, so a worker running a different build is refused before it runs anything.
inline void identity_anchor() noexcept {}

inline const code_location& anchor_location() {
  static const code_location where = locate(reinterpret_cast<const void*>(&identity_anchor));
  return where;
}

}  // namespace parallel::detail::ipc
