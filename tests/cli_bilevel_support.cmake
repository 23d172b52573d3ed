# Helpers of the bilevel CLI tests (cli_bilevel_test.cmake, cli_bilevel_stationary_test.cmake).

# Runs the program with ARGN: its stdout and stderr together in out_var, its exit code in code_var.
function(run_d2r out_var code_var)
  execute_process(COMMAND "${D2R}" ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
  set(${code_var} ${code} PARENT_SCOPE)
endfunction()

function(decimal_micro value out)  # a plain decimal string -> integer millionths, truncated
  if(NOT value MATCHES "^(-?)([0-9]+)(\\.([0-9]*))?$")
    message(FATAL_ERROR "not a plain decimal: ${value}")
  endif()
  set(sign "${CMAKE_MATCH_1}")
  set(int "${CMAKE_MATCH_2}")
  string(SUBSTRING "${CMAKE_MATCH_4}000000" 0 6 frac)
  # math() reads leading zeros as decimal; the fraction through a "1" prefix keeps its zeros.
  math(EXPR v "${sign}(${int} * 1000000 + 1${frac} - 1000000)")
  set(${out} ${v} PARENT_SCOPE)
endfunction()
