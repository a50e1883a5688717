# A program that uses start::spawn but forgot parallel::spawn_main (seed 000's missing
# `if __name__ == '__main__':`): its spawned child and its parent both get spawn_error naming
# spawn_main, and the parent within 5 s even when the child never answers. No recursion, no hang.
# Included by tests/CMakeLists.txt and tests/windows.cmake.
add_executable(forgotten_spawn_main ${CMAKE_CURRENT_LIST_DIR}/forgotten_spawn_main.cpp)
target_link_libraries(forgotten_spawn_main PRIVATE parallel::parallel parallel_dev)
add_test(NAME spawn_guard.child_starts_workers COMMAND forgotten_spawn_main)
add_test(NAME spawn_guard.child_never_answers COMMAND forgotten_spawn_main busy)
set_tests_properties(spawn_guard.child_starts_workers spawn_guard.child_never_answers
                     PROPERTIES LABELS unit TIMEOUT 30)
