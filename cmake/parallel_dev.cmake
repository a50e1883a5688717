# parallel_dev: the settings for working on parallel itself, linked by tests, benchmarks and
# examples, never by parallel::parallel (not installed, not exported). A consumer's flags are
# the consumer's business.
#
#   -DPARALLEL_WERROR=ON                    warnings are errors (./scripts/test, CI)
#   -DPARALLEL_SANITIZE="address;undefined" or "thread"
#
# Sanitizers go on compile *and* link options so that every object and the runtime agree.
add_library(parallel_dev INTERFACE)

option(PARALLEL_WERROR "Treat compiler warnings as errors in tests, benchmarks and examples" OFF)
set(PARALLEL_SANITIZE "" CACHE STRING
    "Sanitizers for tests, benchmarks and examples: address;undefined, or thread (empty: none)")
set_property(CACHE PARALLEL_SANITIZE PROPERTY STRINGS "" "address;undefined" "address" "undefined"
                                                      "thread")

if(MSVC)
  target_compile_options(parallel_dev INTERFACE /W4 /permissive- $<$<BOOL:${PARALLEL_WERROR}>:/WX>)
else()
  target_compile_options(parallel_dev INTERFACE -Wall -Wextra -Wpedantic
                                                $<$<BOOL:${PARALLEL_WERROR}>:-Werror>)
endif()

if(PARALLEL_SANITIZE)
  foreach(sanitizer IN LISTS PARALLEL_SANITIZE)
    if(NOT sanitizer MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "parallel: PARALLEL_SANITIZE has '${sanitizer}'; "
                          "use address;undefined, or thread (or leave it empty)")
    endif()
  endforeach()
  if("thread" IN_LIST PARALLEL_SANITIZE AND "address" IN_LIST PARALLEL_SANITIZE)
    message(FATAL_ERROR "parallel: PARALLEL_SANITIZE: thread and address cannot be combined; "
                        "make two build directories")
  endif()
  if(MSVC)
    message(FATAL_ERROR "parallel: PARALLEL_SANITIZE is for GCC and Clang")
  endif()

  list(JOIN PARALLEL_SANITIZE "," sanitizers)
  set(sanitize_flags -fsanitize=${sanitizers} -fno-omit-frame-pointer)
  if("undefined" IN_LIST PARALLEL_SANITIZE)
    # A UB report fails the test instead of scrolling past in its output.
    list(APPEND sanitize_flags -fno-sanitize-recover=all)
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND "address" IN_LIST PARALLEL_SANITIZE
     AND "undefined" IN_LIST PARALLEL_SANITIZE)
    # G++ puts ASan redzones around UBSan's own per-check records too: unoptimised, the test
    # program grows to 370 MB, 120 MB of it data that every start of it (each spawned worker)
    # relocates and registers, 0.3 s a start. Without redzones around globals it is a quarter
    # of that; the clang++ ASan build still checks globals.
    list(APPEND sanitize_flags --param=asan-globals=0)
  endif()
  target_compile_options(parallel_dev INTERFACE ${sanitize_flags})
  target_link_options(parallel_dev INTERFACE ${sanitize_flags})
  if("address" IN_LIST PARALLEL_SANITIZE)
    # ASan describes every global (string literals included) in a record of pointers: in a
    # position-independent executable that is 2 million relative relocations in the test program
    # (clang++ -O0), 0.1 s of each start of it, and every spawned worker is one. Linked at a
    # fixed address, the linker resolves them: the spawn fault matrix takes 8 s instead of 14.
    target_link_options(parallel_dev INTERFACE
                        $<$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>:-no-pie>)
  endif()
  message(STATUS "parallel: sanitizers for tests, benchmarks and examples: ${sanitizers}")
endif()
