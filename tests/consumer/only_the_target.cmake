# Included by the add_subdirectory and FetchContent consumers after they have added parallel:
# a consumer must get parallel::parallel and nothing else: no tests, benchmarks or examples
# (they default OFF when parallel is not the top-level project), no dev-settings target.
function(check_only_the_target parallel_source_dir)
  if(NOT TARGET parallel::parallel)
    message(FATAL_ERROR "parallel::parallel is not defined")
  endif()
  get_property(targets DIRECTORY "${parallel_source_dir}" PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY "${parallel_source_dir}" PROPERTY SUBDIRECTORIES)
  if(NOT targets STREQUAL "parallel" OR subdirs)
    message(FATAL_ERROR "a consumer should get only the target parallel, but parallel defined "
                        "targets '${targets}' and added directories '${subdirs}'")
  endif()
endfunction()
