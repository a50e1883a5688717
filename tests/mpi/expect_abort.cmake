# cmake -DCOMMAND=mpirun -DARGS="a|b|c" -DEXPECT=<regex> -P expect_abort.cmake
# Passes when the command exits non-zero and its output (stdout and stderr) matches <regex>.
string(REPLACE "|" ";" args "${ARGS}")
execute_process(COMMAND ${COMMAND} ${args} RESULT_VARIABLE status OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
message("${out}${err}")
if(status EQUAL 0)
  message(FATAL_ERROR "expected mpirun to end with a non-zero status, got 0")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "the output does not match '${EXPECT}'")
endif()
