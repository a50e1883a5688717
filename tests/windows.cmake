# Tests of parallel on Windows (included by tests/CMakeLists.txt when the target is Windows):
# cross-built with mingw-w64 (cmake/mingw-w64-posix.cmake) and run by ctest under Wine, or run
# natively. What runs is what Windows has: start::spawn over CreateProcessW, and the parts of the
# library that need no operating system. The POSIX-only tests (fork, signals, /proc, descriptors,
# shared libraries through dlopen, tests/faults/) are not built here.
#
#   parallel_tests         main.cpp + the files below, one ctest test per TEST_CASE (label unit)
#   spawn_guard.*          forgotten_spawn_main.exe: a program without parallel::spawn_main gets
#                          spawn_error naming it within 5 s, never a recursion
#   compile_fail.*         tests/compile_fail_windows/: start::fork and start::forkserver are
#                          compile errors here

# --- Catch2 v2, header-only ------------------------------------------------------------------------
# A cross build must not see the host's /usr/include (its C library headers would shadow
# mingw's): the build dir gets an include dir that holds nothing but a link to catch2/.
find_path(PARALLEL_CATCH2_INCLUDE catch2/catch.hpp PATHS /usr/include /usr/local/include
          NO_CMAKE_FIND_ROOT_PATH)
find_file(PARALLEL_CATCH_CMAKE Catch.cmake PATHS /usr/lib/cmake/Catch2 /usr/share/cmake/Catch2
          /usr/local/lib/cmake/Catch2 NO_CMAKE_FIND_ROOT_PATH)
if(NOT PARALLEL_CATCH2_INCLUDE OR NOT PARALLEL_CATCH_CMAKE)
  message(FATAL_ERROR "parallel: the Windows tests need Catch2 v2's header and CMake files "
                      "(Debian: apt-get install catch2)")
endif()
set(catch2_only "${CMAKE_CURRENT_BINARY_DIR}/catch2-include")
file(MAKE_DIRECTORY "${catch2_only}")
file(CREATE_LINK "${PARALLEL_CATCH2_INCLUDE}/catch2" "${catch2_only}/catch2" SYMBOLIC)
include("${PARALLEL_CATCH_CMAKE}") # catch_discover_tests(), which runs the tests through the
                                   # emulator (Wine) when cross-compiling

add_library(parallel_catch2 INTERFACE)
target_include_directories(parallel_catch2 SYSTEM INTERFACE "${catch2_only}")
target_compile_definitions(parallel_catch2 INTERFACE PARALLEL_CATCH2_VERSION_MAJOR=2)

add_library(parallel_catch_main OBJECT main.cpp)
target_link_libraries(parallel_catch_main PRIVATE parallel::parallel parallel_catch2 parallel_dev)
target_compile_options(parallel_catch_main PRIVATE -O0 -g0)

# --- unit tests ------------------------------------------------------------------------------------
# Few files on purpose: each costs a compile in CI's mingw step (~5 minutes in all).
set(windows_test_sources test_spawn_portable.cpp test_ipc_frame.cpp test_errors.cpp test_parker.cpp)
add_executable(parallel_tests $<TARGET_OBJECTS:parallel_catch_main> ${windows_test_sources})
target_link_libraries(parallel_tests PRIVATE parallel::parallel parallel_catch2 parallel_dev)
catch_discover_tests(parallel_tests PROPERTIES LABELS unit TIMEOUT 120)

include(spawn_guard/spawn_guard.cmake) # a program that forgot parallel::spawn_main

add_executable(workers_die_with_parent spawn_guard/workers_die_with_parent.cpp)
target_link_libraries(workers_die_with_parent PRIVATE parallel::parallel parallel_dev)
add_test(NAME spawn_guard.workers_die_with_parent COMMAND workers_die_with_parent)
set_tests_properties(spawn_guard.workers_die_with_parent PROPERTIES LABELS unit TIMEOUT 30)

# --- compile-fail tests ----------------------------------------------------------------------------
file(GLOB compile_fail_sources CONFIGURE_DEPENDS
     "${CMAKE_CURRENT_SOURCE_DIR}/compile_fail_windows/*.cpp")
foreach(source IN LISTS compile_fail_sources)
  get_filename_component(name "${source}" NAME_WE)
  file(STRINGS "${source}" expected REGEX "// expected-error: " LIMIT_COUNT 1)
  string(REGEX REPLACE ".*// expected-error: *" "" expected "${expected}")
  add_executable(compile_fail_${name} EXCLUDE_FROM_ALL "${source}")
  target_link_libraries(compile_fail_${name} PRIVATE parallel::parallel)
  add_test(NAME compile_fail.${name}
           COMMAND "${CMAKE_COMMAND}" --build "${CMAKE_BINARY_DIR}" --target compile_fail_${name}
                   --config $<CONFIG>)
  set_tests_properties(
    compile_fail.${name} PROPERTIES PASS_REGULAR_EXPRESSION "${expected}" LABELS compile_fail
                                    RESOURCE_LOCK parallel_build_dir)
endforeach()
