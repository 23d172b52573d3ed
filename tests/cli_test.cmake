# Runs the d2r program like a user: a good `sample` call whose printed statistics must match the
# distribution (4 standard errors), and bad calls that must exit with code 2 and a clear message.
# Invoked by ctest with -DD2R=<path to the program>.
function(run_d2r out_var code_var)
  execute_process(COMMAND "${D2R}" ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
  set(${code_var} ${code} PARENT_SCOPE)
endfunction()

# Diagonal Gaussian, G = 40000 draws: the row of dim 0 is "0  mean  sample-mean  std  sample-std".
run_d2r(out code sample --head diag --mean 1,2 --std 0.5,2 -G 40000 --seed 3 --device cpu)
if(NOT code EQUAL 0)
  message(FATAL_ERROR "d2r sample failed (${code}):\n${out}")
endif()
string(REGEX MATCH "\n +0 +1\\.0000 +([-0-9.]+) +0\\.5000 +([0-9.]+)" row "${out}")
if(NOT row)
  message(FATAL_ERROR "no row for dim 0 in:\n${out}")
endif()
set(mean "${CMAKE_MATCH_1}")
set(std "${CMAKE_MATCH_2}")
# 4 standard errors: 4·0.5/sqrt(40000) = 0.01 for the mean, 4·0.5/sqrt(2·40000) ≈ 0.007 for the std.
if(mean LESS 0.99 OR mean GREATER 1.01)
  message(FATAL_ERROR "sample mean of dim 0 is ${mean}, expected 1 ± 0.01:\n${out}")
endif()
if(std LESS 0.493 OR std GREATER 0.507)
  message(FATAL_ERROR "sample std of dim 0 is ${std}, expected 0.5 ± 0.007:\n${out}")
endif()

# Categorical with a masked class: the masked class is never drawn.
run_d2r(out code sample --head categorical --logits 0,1,-inf,2 -G 20000 --device cpu)
if(NOT code EQUAL 0 OR NOT out MATCHES "\n +2 +-inf +0\\.00000 +0\\.00000")
  message(FATAL_ERROR "categorical sample: exit ${code}, masked class row missing or drawn:\n${out}")
endif()

# Bad input: exit code 2 and a message naming the argument.
run_d2r(out code sample --head diag --mean 1,2 --std 1 --device cpu)
if(NOT code EQUAL 2 OR NOT out MATCHES "--std: expected 2 standard deviations")
  message(FATAL_ERROR "expected exit 2 naming --std, got ${code}:\n${out}")
endif()
run_d2r(out code sample --head cholesky --mean 0,0 --tril 1,0,-1 --device cpu)
if(NOT code EQUAL 2 OR NOT out MATCHES "diagonal entry L\\(1,1\\) is -1")
  message(FATAL_ERROR "expected exit 2 naming the bad diagonal, got ${code}:\n${out}")
endif()
run_d2r(out code sample --head nope --device cpu)
if(NOT code EQUAL 2)
  message(FATAL_ERROR "expected exit 2 for an unknown head, got ${code}:\n${out}")
endif()
message(STATUS "d2r program: ok")
