# shellcheck shell=bash disable=SC2034 # the arrays are used by the scripts that source this
# Sourced by scripts/test, scripts/bench and scripts/docs: the Debian packages the project builds
# with, and parallel_ensure_packages, which installs the missing ones (as root) or says how
# (otherwise).

# What every build needs: g++ and clang (16: clang 14, Debian 12's default, cannot compile
# libstdc++ 12's <ranges> views, llvm/llvm-project#44178) with its sanitizer runtimes, CMake +
# Ninja, Catch2 (v2 on Debian 12), Google Benchmark, oneTBB (a benchmark peer; libstdc++'s
# std::execution::par needs it), Open MPI (the parallel::mpi target and its mpirun tests).
PARALLEL_BUILD_PACKAGES=(g++ clang-16 libclang-rt-16-dev cmake ninja-build catch2 libbenchmark-dev
                         libtbb-dev libcereal-dev libopenmpi-dev openmpi-bin)
# The lint steps of scripts/test: clang-format (Debian 12's, 14, as developers run it) and
# clang-tidy 16 (it must parse what clang 16 compiles).
PARALLEL_LINT_PACKAGES=(clang-format clang-tidy-16)
# What ./scripts/bench adds: Debian's python3 runs bench/compare.py and, with joblib (loky), the
# Python peers (bench/peers/compare_peers.py); multiprocess is the dill-based Pool that Python
# programs reach for when lambdas will not pickle. (OpenMP for g++ is libgomp, part of g++; Open
# MPI, for the mpi family, is in the build packages.)
PARALLEL_BENCH_PACKAGES=(python3 python3-joblib python3-multiprocess python3-matplotlib)
# The mingw build of scripts/test: Windows executables cross-built with mingw-w64 (the -posix
# variant: with win32 threads std::thread does not compile) and run under Wine, headless.
PARALLEL_WINDOWS_PACKAGES=(g++-mingw-w64-x86-64-posix wine64)
# What ./scripts/docs needs: doxygen builds the site from README.md, docs/*.md and the ///
# comments of include/parallel/*.hpp (no graphviz: the site has no diagrams); headless chromium
# renders pages of it to check what a browser shows; python3 (standard library only) runs the
# site's link checker, scripts/check-site, and the Markdown filter doxygen reads through.
PARALLEL_DOCS_PACKAGES=(doxygen chromium python3)

# parallel_ensure_packages PACKAGE...
# Installs the packages that dpkg does not list as installed. As root: apt-get update + install.
# Otherwise: prints the one command to run and exits 1. Not Debian (no dpkg/apt-get): says so
# and carries on, so CMake's own messages name what is missing.
parallel_ensure_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: not a Debian system; make sure these (or their equivalents) are installed: $*" >&2
    return 0
  fi
  local missing=() package
  for package in "$@"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" != installed ]]; then
      missing+=("$package")
    fi
  done
  ((${#missing[@]} == 0)) && return 0

  if ((EUID != 0)); then
    echo "error: missing Debian packages: ${missing[*]}" >&2
    echo "install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "==> installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
