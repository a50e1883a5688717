// Catch2's runner and main(), in a translation unit of their own: this file takes ~20 s to
// compile, and keeping it apart means that editing a test file recompiles only that file.
#define CATCH_CONFIG_MAIN  // v2: this translation unit defines the runner and main()
#include "catch.hpp"

#if PARALLEL_CATCH2_V3
// v3 ignores CATCH_CONFIG_MAIN; its Catch2WithMain library would do the same as this.
int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
#endif
