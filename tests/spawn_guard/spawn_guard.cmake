# A program that uses start::spawn (or start::forkserver) but forgot parallel::spawn_main (the
# missing `if __name__ == '__main__':`): its spawned child says so and ends inside the call, even
# though main() catches spawn_error; the parent gets spawn_error naming spawn_main, within 5 s
# even when the child never answers. No recursion, no hang, no user code run past the call.
# Included by tests/CMakeLists.txt and tests/windows.cmake.
add_executable(forgotten_spawn_main ${CMAKE_CURRENT_LIST_DIR}/forgotten_spawn_main.cpp)
target_link_libraries(forgotten_spawn_main PRIVATE parallel::parallel parallel_dev)
add_test(NAME spawn_guard.child_starts_workers COMMAND forgotten_spawn_main)
add_test(NAME spawn_guard.child_never_answers COMMAND forgotten_spawn_main busy)
set_tests_properties(spawn_guard.child_starts_workers spawn_guard.child_never_answers
                     PROPERTIES LABELS unit TIMEOUT 30)
if(NOT WIN32)
  add_test(NAME spawn_guard.forkserver_names_spawn_main COMMAND forgotten_spawn_main forkserver)
  set_tests_properties(spawn_guard.forkserver_names_spawn_main PROPERTIES LABELS unit TIMEOUT 30)
endif()
