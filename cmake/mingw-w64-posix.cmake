# Cross-compiling parallel for 64-bit Windows with Debian's mingw-w64 (g++-mingw-w64-x86-64-posix)
# and running what it builds under Wine (wine64), as ./scripts/test mingw does:
#
#   cmake -S . -B build/mingw -G Ninja --toolchain cmake/mingw-w64-posix.cmake
#
# The -posix compilers, not the default -win32 ones: with win32 threads std::thread does not
# compile. Executables are linked -static, so Wine needs no MinGW DLLs next to them. ctest runs
# tests through CMAKE_CROSSCOMPILING_EMULATOR; set WINEPREFIX (scripts/test uses one inside the
# build directory) and WINEDEBUG=-all to keep Wine quiet.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc-posix)
set(CMAKE_CXX_COMPILER x86_64-w64-mingw32-g++-posix)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)

set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

find_program(PARALLEL_WINE NAMES wine64 wine PATHS /usr/lib/wine NO_CMAKE_FIND_ROOT_PATH)
if(PARALLEL_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${PARALLEL_WINE}")
endif()
