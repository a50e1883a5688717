# A Debian package of the install (`cpack -G DEB` in a build directory, or `cpack --config
# <build>/CPackConfig.cmake`): libparallel-dev_<version>_all.deb with the headers, the CMake
# package (find_package(parallel CONFIG) finds it in /usr) and the docs. Header-only, so one
# package serves every architecture.
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "libparallel-dev")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "parallel brings Python's multiprocessing.Pool, concurrent.futures and joblib to C++20: \
map, starmap, imap, imap_unordered and submit over a work-stealing thread pool, worker \
processes (fork, forkserver, spawn) and MPI ranks. Header-only: this package holds the \
headers, the CMake package (parallel::parallel, and parallel::mpi with COMPONENTS mpi) and the \
documentation.")
set(CPACK_PACKAGE_CONTACT "The parallel authors <parallel@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "all")
set(CPACK_DEBIAN_PACKAGE_SECTION "libdevel")
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libstdc++-12-dev | libstdc++-dev")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "cmake (>= 3.21), libopenmpi-dev, libcereal-dev")
# Only the install rules of parallel_install.cmake: no test, benchmark or example.
set(CPACK_INSTALL_CMAKE_PROJECTS "${PROJECT_BINARY_DIR};${PROJECT_NAME};ALL;/")
include(CPack)
