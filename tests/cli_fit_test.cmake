# Runs `d2r fit` like a user: every method on a small generated CSV (exit 0, results.json with its
# keys and finite numbers, curves.csv), a bilevel run resumed from its checkpoint against the
# uninterrupted run, and bad input (exit code 2, a message naming the problem, nothing written
# into --out). Invoked by ctest with -DD2R=<path to the program> -DWORK_DIR=<scratch directory>.
function(run_d2r out_var code_var)
  execute_process(COMMAND "${D2R}" ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
  set(${code_var} ${code} PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# ---------------------------------------------------------------- data: y = x + (1, -1) + noise
# 80 rows; values in thousandths written as "<integer>e-3" (the reader takes exponents), from a
# linear congruential generator so that the file is the same everywhere.
set(csv "x0,x1,y0,y1\n")
set(state 12345)
foreach(i RANGE 79)
  set(v "")
  foreach(k RANGE 3)
    math(EXPR state "(${state} * 1103515245 + 12345) % 2147483648")
    list(APPEND v ${state})
  endforeach()
  list(GET v 0 r0)
  list(GET v 1 r1)
  list(GET v 2 r2)
  list(GET v 3 r3)
  math(EXPR x0 "${r0} % 10001 - 5000")
  math(EXPR x1 "${r1} % 10001 - 5000")
  math(EXPR y0 "${x0} + 1000 + ${r2} % 1001 - 500")
  math(EXPR y1 "${x1} - 1000 + ${r3} % 1001 - 500")
  string(APPEND csv "${x0}e-3,${x1}e-3,${y0}e-3,${y1}e-3\n")
endforeach()
set(data "${WORK_DIR}/data.csv")
file(WRITE "${data}" "${csv}")
set(common ${data} --targets y0,y1 --hidden 8,8 --seed 3 --device cpu -q)

# Checks that `dir`/results.json exists, parses and holds the keys; `method` picks the extra keys.
function(check_results dir method)
  if(NOT EXISTS "${dir}/results.json" OR NOT EXISTS "${dir}/curves.csv")
    message(FATAL_ERROR "${method}: results.json or curves.csv missing in ${dir}")
  endif()
  file(READ "${dir}/results.json" json)
  foreach(key d2r_version date device config records final)
    string(JSON t ERROR_VARIABLE e TYPE "${json}" ${key})
    if(e)
      message(FATAL_ERROR "${method}: results.json has no '${key}': ${e}")
    endif()
  endforeach()
  string(JSON m GET "${json}" config method)
  if(NOT m STREQUAL method)
    message(FATAL_ERROR "results.json config.method is '${m}', expected '${method}'")
  endif()
  foreach(part train validation)
    foreach(metric nll_per_dim rmse mean_std)
      string(JSON t TYPE "${json}" final ${part} ${metric})
      if(NOT t STREQUAL "NUMBER")
        message(FATAL_ERROR "${method}: final.${part}.${metric} is ${t}, expected a finite number")
      endif()
    endforeach()
  endforeach()
  string(JSON n LENGTH "${json}" records)
  if(n LESS 1)
    message(FATAL_ERROR "${method}: no records")
  endif()
  if(method MATCHES "pg|heuristic|bilevel")
    string(JSON t TYPE "${json}" final reward params 0)
    if(NOT t STREQUAL "NUMBER")
      message(FATAL_ERROR "${method}: final.reward.params[0] is ${t}")
    endif()
  endif()
endfunction()

# ---------------------------------------------------------------- every method
foreach(method mse nll pg heuristic bilevel)
  set(dir "${WORK_DIR}/${method}")
  run_d2r(out code fit ${common} --method ${method} --steps 30 --outer-steps 3 --inner-steps 5 --out "${dir}")
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "d2r fit --method ${method} failed (${code}):\n${out}")
  endif()
  if(NOT out MATCHES "validation +[-0-9.]+ +[0-9.]+ +[0-9.]+")
    message(FATAL_ERROR "d2r fit --method ${method}: no validation row in the table:\n${out}")
  endif()
  check_results("${dir}" ${method})
endforeach()
if(NOT EXISTS "${WORK_DIR}/bilevel/checkpoint.ckpt")
  message(FATAL_ERROR "the bilevel run wrote no checkpoint")
endif()
# Other settings: diagonal and full rewards, a Cholesky head, no validation split.
run_d2r(out code fit ${common} --method pg --reward full --u 1,0.2,0.8 --head cholesky --steps 20 --standardize
        --out "${WORK_DIR}/pg_full")
if(NOT code EQUAL 0)
  message(FATAL_ERROR "pg with a full reward and a Cholesky head failed (${code}):\n${out}")
endif()
run_d2r(out code fit ${common} --method bilevel --reward diagonal --outer-steps 2 --inner-steps 3 --val-fraction 0
        --out "${WORK_DIR}/bilevel_diag")
if(NOT code EQUAL 0 OR NOT out MATCHES "learned reward: U = diag\\(")
  message(FATAL_ERROR "bilevel with a diagonal reward failed (${code}):\n${out}")
endif()

# ---------------------------------------------------------------- resume = uninterrupted
set(bl ${common} --method bilevel --outer-steps 6 --inner-steps 5 --checkpoint-every 2)
run_d2r(out code fit ${bl} --out "${WORK_DIR}/whole")
if(NOT code EQUAL 0)
  message(FATAL_ERROR "uninterrupted bilevel run failed (${code}):\n${out}")
endif()
# Interrupted after outer step 3 (the run ends there), then resumed to 6 from the checkpoint.
run_d2r(out code fit ${common} --method bilevel --outer-steps 3 --inner-steps 5 --checkpoint-every 3
        --out "${WORK_DIR}/resumed")
if(NOT code EQUAL 0)
  message(FATAL_ERROR "first half of the resumed run failed (${code}):\n${out}")
endif()
run_d2r(out code fit ${bl} --resume --out "${WORK_DIR}/resumed")
if(NOT code EQUAL 0 OR NOT out MATCHES "resuming from the checkpoint after outer step 3")
  message(FATAL_ERROR "resumed run failed (${code}):\n${out}")
endif()
file(READ "${WORK_DIR}/whole/results.json" a)
file(READ "${WORK_DIR}/resumed/results.json" b)
string(JSON na LENGTH "${a}" records)
string(JSON nb LENGTH "${b}" records)
if(NOT na EQUAL 6 OR NOT nb EQUAL 6)
  message(FATAL_ERROR "expected 6 records in both runs, got ${na} and ${nb}")
endif()
foreach(path "final;reward;params;0" "final;train;nll_per_dim" "final;validation;rmse" "records;2;hypergradient;0")
  string(JSON va GET "${a}" ${path})
  string(JSON vb GET "${b}" ${path})
  if(NOT va STREQUAL vb)
    message(FATAL_ERROR "resumed run differs from the uninterrupted one at ${path}: ${vb} vs ${va}")
  endif()
endforeach()
# Resuming with other settings is refused, naming the setting, and leaves the directory as it was.
file(GLOB before "${WORK_DIR}/resumed/*")
run_d2r(out code fit ${bl} --lambda 0.5 --resume --out "${WORK_DIR}/resumed")
if(NOT code EQUAL 2 OR NOT out MATCHES "--resume: .*other settings \\(lambda\\)")
  message(FATAL_ERROR "expected exit 2 naming lambda for a resume with other settings, got ${code}:\n${out}")
endif()
file(GLOB after "${WORK_DIR}/resumed/*")
if(NOT before STREQUAL after)
  message(FATAL_ERROR "a refused resume changed the directory: ${before} -> ${after}")
endif()

# ---------------------------------------------------------------- bad input: exit 2, message, no files
file(WRITE "${WORK_DIR}/ragged.csv" "x0,x1,y0\n1,2,3\n4,5\n6,7,8\n")
file(WRITE "${WORK_DIR}/text.csv" "x0,x1,y0\n1,2,3\n4,five,6\n7,8,9\n")
file(WRITE "${WORK_DIR}/not_a_dir" "")
set(bad_out "${WORK_DIR}/bad_out")
file(MAKE_DIRECTORY "${WORK_DIR}/empty_out")
# Each case: "<expected message regex (no semicolons)>|<arguments separated by ~>".
set(cases
    "File does not exist.*missing\\.csv|fit~${WORK_DIR}/missing.csv~--targets~y0"
    "ragged\\.csv line 3, column 3 'y0': missing field|fit~${WORK_DIR}/ragged.csv~--targets~y0"
    "no target column named 'nope'. available columns: 'x0', 'x1', 'y0', 'y1'|fit~${data}~--targets~nope"
    "text\\.csv line 3, column 2 'x1': expected a finite number, got 'five'|fit~${WORK_DIR}/text.csv~--targets~y0"
    "--lambda: expected a finite number >= 0, got -1|fit~${data}~--targets~y0~--lambda~-1"
    "--steps: Value 0 not in range|fit~${data}~--targets~y0~--steps~0"
    "--lr: expected a finite number > 0, got 0|fit~${data}~--targets~y0~--lr~0"
    "--u: a scalar reward on 2 targets has 1 parameter, got 2|fit~${data}~--targets~y0,y1~--method~pg~--u~1,2"
    "--u: entry 0 is -1. expected finite and > 0|fit~${data}~--targets~y0~--method~bilevel~--u~-1"
    "--head: the bilevel method trains a diagonal Gaussian head only|fit~${data}~--targets~y0~--method~bilevel~--head~cholesky"
    "--resume: no checkpoint|fit~${data}~--targets~y0~--method~bilevel~--resume"
    "--resume: only a bilevel run can be resumed|fit~${data}~--targets~y0~--method~nll~--resume"
    "--task: classification is not yet available|fit~${data}~--targets~y0~--task~classification"
    "--val-fraction: .*0\\.99|fit~${data}~--targets~y0~--val-fraction~0.99")
foreach(case IN LISTS cases)
  string(FIND "${case}" "|" bar)
  string(SUBSTRING "${case}" 0 ${bar} expect)
  math(EXPR start "${bar} + 1")
  string(SUBSTRING "${case}" ${start} -1 args)
  string(REPLACE "~" ";" args "${args}")
  foreach(out_dir "${bad_out}" "${WORK_DIR}/empty_out")
    run_d2r(out code ${args} --device cpu --out "${out_dir}")
    if(NOT code EQUAL 2 OR NOT out MATCHES "${expect}")
      message(FATAL_ERROR "d2r ${args}: expected exit 2 and a message matching '${expect}', got ${code}:\n${out}")
    endif()
  endforeach()
  if(EXISTS "${bad_out}")
    message(FATAL_ERROR "d2r ${args} created ${bad_out} on bad input")
  endif()
  file(GLOB left "${WORK_DIR}/empty_out/*" "${WORK_DIR}/empty_out/.*")
  if(left)
    message(FATAL_ERROR "d2r ${args} left files in --out on bad input: ${left}")
  endif()
endforeach()
# Unwritable --out: under a regular file, or a regular file itself.
foreach(out_dir "${WORK_DIR}/not_a_dir/sub" "${WORK_DIR}/not_a_dir")
  run_d2r(out code fit ${common} --method nll --steps 5 --out "${out_dir}")
  if(NOT code EQUAL 2 OR NOT out MATCHES "--out: .*not a directory")
    message(FATAL_ERROR "expected exit 2 for --out ${out_dir}, got ${code}:\n${out}")
  endif()
endforeach()
file(SIZE "${WORK_DIR}/not_a_dir" size)
if(NOT size EQUAL 0)
  message(FATAL_ERROR "--out onto a regular file changed it")
endif()
# A bad value in a column that is not used is fine: the features are chosen with --features.
run_d2r(out code fit "${WORK_DIR}/text.csv" --targets y0 --features x0 --method nll --steps 5 --val-fraction 0
        --device cpu -q --out "${WORK_DIR}/unused_column")
if(NOT code EQUAL 0)
  message(FATAL_ERROR "a bad cell in an unused column should not matter (${code}):\n${out}")
endif()
# The reproduction of the classification tables is not yet available: exit 2, no files.
run_d2r(out code reproduce tabular --device cpu --out "${bad_out}")
if(NOT code EQUAL 2 OR NOT out MATCHES "not yet available" OR EXISTS "${bad_out}")
  message(FATAL_ERROR "reproduce tabular: expected exit 2 and no files, got ${code}:\n${out}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "d2r fit: ok")
