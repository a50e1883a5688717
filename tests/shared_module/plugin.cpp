// A plugin the test program opens with dlopen while it runs (libparallel_test_plugin.so): its
// code is in no worker that started before the dlopen.
extern "C" int parallel_test_plugin_negate(int x) { return -x; }
