# Install rules and package config files, for find_package(parallel CONFIG).
#
# Two trees get a parallelConfig.cmake:
#   - the install tree, <prefix>/share/cmake/parallel/ (share/, not lib/: the library is
#     header-only, so one install serves every architecture, hence ARCH_INDEPENDENT below);
#   - the build tree, ${PROJECT_BINARY_DIR}: -Dparallel_DIR=<build dir> works without installing.
include(CMakePackageConfigHelpers)

set(PARALLEL_CONFIG_INSTALL_DIR "${CMAKE_INSTALL_DATADIR}/cmake/parallel"
    CACHE STRING "Where parallelConfig.cmake is installed, relative to the prefix")
mark_as_advanced(PARALLEL_CONFIG_INSTALL_DIR)

set_target_properties(parallel PROPERTIES EXPORT_NAME parallel)
install(TARGETS parallel EXPORT parallelTargets)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/parallelConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/parallelConfig.cmake" INSTALL_DESTINATION "${PARALLEL_CONFIG_INSTALL_DIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/parallelConfigVersion.cmake" COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)

install(
  EXPORT parallelTargets
  NAMESPACE parallel::
  DESTINATION "${PARALLEL_CONFIG_INSTALL_DIR}")
install(FILES "${PROJECT_BINARY_DIR}/parallelConfig.cmake"
              "${PROJECT_BINARY_DIR}/parallelConfigVersion.cmake"
        DESTINATION "${PARALLEL_CONFIG_INSTALL_DIR}")
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" "${PROJECT_SOURCE_DIR}/README.md"
              "${PROJECT_SOURCE_DIR}/CHANGELOG.md" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/parallel")

# The build-tree twin of the install(EXPORT) above: parallelConfig.cmake in the build dir
# includes this file, whose include directory is the source tree's include/.
export(
  EXPORT parallelTargets
  NAMESPACE parallel::
  FILE "${PROJECT_BINARY_DIR}/parallelTargets.cmake")
