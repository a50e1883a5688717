# Configure, build and run one consumer project of tests/consumer/, as a user of parallel would.
# Run by ctest (tests/CMakeLists.txt) as `cmake -D MODE=... -P parallel_consumer_test.cmake`.
#
#   MODE                 add_subdirectory | fetchcontent: the consumer gets PARALLEL_SOURCE_DIR;
#                        find_package_install: `cmake --install` this build into
#                        BINARY_DIR/prefix, consumer gets CMAKE_PREFIX_PATH=that prefix;
#                        find_package_build_tree: consumer gets parallel_DIR=PARALLEL_BINARY_DIR;
#                        debian_package: `cpack -G DEB` of this build, `dpkg -i` of the package
#                        (as root; otherwise only its contents are checked), the consumer finds
#                        it where Debian puts packages, and `dpkg -r` removes it again
#   SOURCE_DIR           the consumer project
#   BINARY_DIR           its build directory (wiped first)
#   PARALLEL_SOURCE_DIR, PARALLEL_BINARY_DIR   this checkout and its build
#   GENERATOR, MAKE_PROGRAM, CXX_COMPILER, BUILD_TYPE   the same as this build's
cmake_minimum_required(VERSION 3.21)

foreach(var MODE SOURCE_DIR BINARY_DIR PARALLEL_SOURCE_DIR PARALLEL_BINARY_DIR GENERATOR
            CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "parallel_consumer_test.cmake: -D ${var}=... is missing")
  endif()
endforeach()

function(run step)
  message(STATUS "consumer.${MODE}: ${step}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "consumer.${MODE}: ${step} failed (${result})")
  endif()
endfunction()

set(config_args)
if(BUILD_TYPE)
  set(config_args --config "${BUILD_TYPE}")
endif()

file(REMOVE_RECURSE "${BINARY_DIR}")
file(MAKE_DIRECTORY "${BINARY_DIR}")

if(MODE STREQUAL "add_subdirectory" OR MODE STREQUAL "fetchcontent")
  set(how "-DPARALLEL_SOURCE_DIR=${PARALLEL_SOURCE_DIR}")
elseif(MODE STREQUAL "find_package_install")
  set(prefix "${BINARY_DIR}/prefix")
  run(install "${CMAKE_COMMAND}" --install "${PARALLEL_BINARY_DIR}" --prefix "${prefix}"
      ${config_args})
  # What a package manager would ship: the headers, the CMake package and the licence; no test,
  # benchmark or example.
  foreach(expected include/parallel/parallel.hpp share/cmake/parallel/parallelConfig.cmake
                   share/cmake/parallel/parallelConfigVersion.cmake
                   share/cmake/parallel/parallelTargets.cmake)
    if(NOT EXISTS "${prefix}/${expected}")
      message(FATAL_ERROR "consumer.${MODE}: the install has no ${expected}")
    endif()
  endforeach()
  file(GLOB_RECURSE installed RELATIVE "${prefix}" "${prefix}/*")
  list(FILTER installed EXCLUDE REGEX "^(include/parallel/|share/cmake/parallel/|share/doc/parallel/)")
  if(installed)
    message(FATAL_ERROR "consumer.${MODE}: the install has files it should not: ${installed}")
  endif()
  set(how "-DCMAKE_PREFIX_PATH=${prefix}")
elseif(MODE STREQUAL "find_package_build_tree")
  set(how "-Dparallel_DIR=${PARALLEL_BINARY_DIR}")
elseif(MODE STREQUAL "debian_package")
  run(package "${CMAKE_CPACK_COMMAND}" -G DEB --config "${PARALLEL_BINARY_DIR}/CPackConfig.cmake"
      -B "${BINARY_DIR}/package")
  file(GLOB deb "${BINARY_DIR}/package/*.deb")
  list(LENGTH deb debs)
  if(NOT debs EQUAL 1)
    message(FATAL_ERROR "consumer.${MODE}: cpack made ${debs} .deb files: '${deb}'")
  endif()
  execute_process(COMMAND dpkg-deb --contents "${deb}" OUTPUT_VARIABLE contents
                  RESULT_VARIABLE result)
  foreach(expected ./usr/include/parallel/parallel.hpp ./usr/share/cmake/parallel/parallelConfig.cmake
                   ./usr/share/doc/parallel/LICENSE ./usr/share/doc/parallel/README.md)
    if(NOT result EQUAL 0 OR NOT contents MATCHES "${expected}")
      message(FATAL_ERROR "consumer.${MODE}: ${deb} has no ${expected}:\n${contents}")
    endif()
  endforeach()
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT uid STREQUAL "0")
    message(STATUS "consumer.${MODE}: the package's contents are right; installing it needs root "
                   "(dpkg -i), skipped")
    return()
  endif()
  run(install dpkg -i "${deb}")
  set(how "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF")  # the package, not a build tree
  set(uninstall dpkg -r libparallel-dev)
else()
  message(FATAL_ERROR "parallel_consumer_test.cmake: unknown MODE '${MODE}'")
endif()

set(generator_args -G "${GENERATOR}")
if(MAKE_PROGRAM)
  list(APPEND generator_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(BUILD_TYPE)
  list(APPEND generator_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()
# With a package installed, a failed step still removes it before the test fails.
if(uninstall)
  macro(run step)
    message(STATUS "consumer.${MODE}: ${step}: ${ARGN}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
      execute_process(COMMAND ${uninstall})
      message(FATAL_ERROR "consumer.${MODE}: ${step} failed (${result}); the package was removed")
    endif()
  endmacro()
endif()
run(configure "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}/build" ${generator_args}
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "${how}")
run(build "${CMAKE_COMMAND}" --build "${BINARY_DIR}/build" ${config_args})

# Single-config generators put the program in the build dir, multi-config ones in a subfolder.
find_program(consumer_program consumer PATHS "${BINARY_DIR}/build" "${BINARY_DIR}/build/${BUILD_TYPE}"
             NO_DEFAULT_PATH NO_CACHE)
if(NOT consumer_program)
  if(uninstall)
    execute_process(COMMAND ${uninstall})
  endif()
  message(FATAL_ERROR "consumer.${MODE}: the build made no program named consumer")
endif()
run(run "${consumer_program}")
if(uninstall)
  run(uninstall ${uninstall})
endif()
