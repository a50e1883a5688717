# parallel_find_package(<Name> DEBIAN_PACKAGE <pkg> [OPTIONAL] [SWITCH <option>]
#                       [find_package arguments...])
#
# find_package(<Name> ...) that fails with the one command that fixes it, instead of CMake's
# generic "Could not find a package configuration file". A macro, not a function, so that
# <Name>_FOUND, <Name>_VERSION and friends land in the caller's scope (imported targets are
# directory-scoped either way). With OPTIONAL, a missing package only prints the hint. SWITCH
# names the option that turns off what needs the package (the tests, the benchmarks): the error
# says so, for whoever only wants to install the headers.
#
#   parallel_find_package(benchmark DEBIAN_PACKAGE libbenchmark-dev)
#   parallel_find_package(TBB DEBIAN_PACKAGE libtbb-dev OPTIONAL)
macro(parallel_find_package parallel_fp_name)
  cmake_parse_arguments(parallel_fp "OPTIONAL" "DEBIAN_PACKAGE;SWITCH" "" ${ARGN})
  find_package(${parallel_fp_name} ${parallel_fp_UNPARSED_ARGUMENTS} QUIET)
  if(NOT ${parallel_fp_name}_FOUND)
    set(parallel_fp_hint
        "${parallel_fp_name} was not found. On Debian/Ubuntu install it with:\n"
        "    sudo apt-get install ${parallel_fp_DEBIAN_PACKAGE}\n"
        "or point CMake at it with -D${parallel_fp_name}_DIR=... or CMAKE_PREFIX_PATH. "
        "./scripts/test and ./scripts/bench install every package they need.")
    if(parallel_fp_SWITCH)
      list(APPEND parallel_fp_hint
           "\nOr, to do without it, configure with -D${parallel_fp_SWITCH}=OFF "
           "(only this project's own builds need ${parallel_fp_name}, not the library).")
    endif()
    if(parallel_fp_OPTIONAL)
      message(STATUS "parallel: optional " ${parallel_fp_hint})
    else()
      message(FATAL_ERROR "parallel: " ${parallel_fp_hint})
    endif()
  endif()
endmacro()
