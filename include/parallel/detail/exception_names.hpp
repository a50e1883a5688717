// The readable names of exception types, for remote_error's type_name() and for the line a
// process prints when its task throws: the same on every platform the C++ ABI (Itanium: g++,
// clang++, mingw-w64) can demangle.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#include <cxxabi.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

namespace parallel::detail::os {

/// The readable name of a type ("std::out_of_range"), or its mangled name where the C++ ABI has
/// no demangler.
inline std::string demangle(const char* mangled) {
#if defined(__GNUC__) || defined(__clang__)
  int result = -1;
  const std::unique_ptr<char, void (*)(void*)> name{
      abi::__cxa_demangle(mangled, nullptr, nullptr, &result), std::free};
  if (result == 0 && name != nullptr) return name.get();
#endif
  return mangled;
}

/// The demangled type of the exception being handled (inside a catch block, including
/// `catch (...)`), or "an exception of unknown type" where the ABI cannot tell.
inline std::string current_exception_type_name() {
#if defined(__GNUC__) || defined(__clang__)
  if (const std::type_info* type = abi::__cxa_current_exception_type(); type != nullptr)
    return demangle(type->name());
#endif
  return "an exception of unknown type";
}

/// Inside a catch block: what() of the exception being handled, or "" when it is not a
/// std::exception.
inline std::string current_exception_message() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return {};
  }
}

/// Inside a catch block: the one line Python's traceback becomes when a parallel::process's
/// task raises ("parallel::process: task raised std::out_of_range: what").
inline void report_process_exception() noexcept {
  try {
    const std::string type = current_exception_type_name();
    try {
      throw;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "parallel::process: task raised %s: %s\n", type.c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "parallel::process: task raised %s\n", type.c_str());
    }
  } catch (...) {
    std::fputs("parallel::process: task raised an exception\n", stderr);
  }
}

}  // namespace parallel::detail::os
