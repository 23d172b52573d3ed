# Runs `d2r fit` like a user: every method on a small generated CSV (exit 0, results.json with its
# keys and finite numbers, curves.csv), a bilevel run resumed from its checkpoint against the
# uninterrupted run, every classification method on a small generated CSV with a label column, a
# minibatched classification bilevel run resumed mid-pass against the uninterrupted run, and bad
# input (exit code 2, a message naming the problem, nothing written into --out).
# Invoked by ctest with -DD2R=<path to the program> -DWORK_DIR=<scratch directory>.
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
  # Each method gets only the options it uses (the others are refused: tests/cli/robustness_test.py).
  if(method STREQUAL "bilevel")
    set(steps --outer-steps 3 --inner-steps 5)
  else()
    set(steps --steps 30)
  endif()
  run_d2r(out code fit ${common} --method ${method} ${steps} --out "${dir}")
  # A bilevel run of 3 outer steps ends step_limited: exit 4, results written.
  if(NOT (code EQUAL 0 OR (method STREQUAL "bilevel" AND code EQUAL 4)))
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
        --outer-data train --out "${WORK_DIR}/bilevel_diag")
if(NOT code EQUAL 4 OR NOT out MATCHES "learned reward: U = diag\\(")
  message(FATAL_ERROR "bilevel with a diagonal reward failed (${code}):\n${out}")
endif()

# ---------------------------------------------------------------- resume = uninterrupted
set(bl ${common} --method bilevel --outer-steps 6 --inner-steps 5 --checkpoint-every 2)
run_d2r(out code fit ${bl} --out "${WORK_DIR}/whole")
if(NOT code EQUAL 4)
  message(FATAL_ERROR "uninterrupted bilevel run failed (${code}):\n${out}")
endif()
# Interrupted after outer step 3 (the run ends there), then resumed to 6 from the checkpoint.
run_d2r(out code fit ${common} --method bilevel --outer-steps 3 --inner-steps 5 --checkpoint-every 3
        --out "${WORK_DIR}/resumed")
if(NOT code EQUAL 4)
  message(FATAL_ERROR "first half of the resumed run failed (${code}):\n${out}")
endif()
run_d2r(out code fit ${bl} --resume --out "${WORK_DIR}/resumed")
if(NOT code EQUAL 4 OR NOT out MATCHES "resuming from the checkpoint after outer step 3")
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
# A minibatched inner loop is recorded in the settings (and the default is the full batch).
run_d2r(out code fit ${common} --method bilevel --outer-steps 2 --inner-steps 4 --inner-batch-size 16
        --out "${WORK_DIR}/bilevel_minibatch")
if(NOT code EQUAL 4 OR NOT out MATCHES "K_in = 4 inner steps \\(windows of 16 shuffled rows")
  message(FATAL_ERROR "bilevel with --inner-batch-size 16 failed (${code}):\n${out}")
endif()
file(READ "${WORK_DIR}/bilevel_minibatch/results.json" json)
string(JSON b GET "${json}" config inner_batch_size)
string(JSON b0 GET "${a}" config inner_batch_size)
if(NOT b EQUAL 16 OR NOT b0 EQUAL 0)
  message(FATAL_ERROR "config.inner_batch_size: ${b} with --inner-batch-size 16, ${b0} by default")
endif()


# ---------------------------------------------------------------- classification: 3 classes in 2-D
# 90 rows, class a/b/c (cyclic) around (2, 0), (0, 2), (-2, -2) with uniform noise of ±1.2.
set(csv "f0,f1,label\n")
set(centres_a 2000 0)
set(centres_b 0 2000)
set(centres_c -2000 -2000)
set(class_names a b c)
foreach(i RANGE 89)
  math(EXPR k "${i} % 3")
  list(GET class_names ${k} cls)
  list(GET centres_${cls} 0 c0)
  list(GET centres_${cls} 1 c1)
  math(EXPR state "(${state} * 1103515245 + 12345) % 2147483648")
  math(EXPR f0 "${c0} + ${state} % 2401 - 1200")
  math(EXPR state "(${state} * 1103515245 + 12345) % 2147483648")
  math(EXPR f1 "${c1} + ${state} % 2401 - 1200")
  string(APPEND csv "${f0}e-3,${f1}e-3,${cls}\n")
endforeach()
set(cls_data "${WORK_DIR}/classes.csv")
file(WRITE "${cls_data}" "${csv}")
set(cls_common ${cls_data} --task classification --label label --seed 3 --device cpu -q)

foreach(method nll pg heuristic bilevel)
  set(dir "${WORK_DIR}/cls_${method}")
  set(extra "")
  if(method STREQUAL "pg")
    set(extra --beta 2)
  elseif(method STREQUAL "bilevel")
    # --final-model pg: PG retrained for the epochs at the learned β (the learning curve checked below);
    # the default, the judged inner policy, is checked in cli_bilevel_test.cmake.
    set(extra --outer-steps 3 --inner-steps 5 --final-model pg)
  endif()
  run_d2r(out code fit ${cls_common} --method ${method} --epochs 6 --batch-size 16 ${extra} --out "${dir}")
  if(NOT (code EQUAL 0 OR (method STREQUAL "bilevel" AND code EQUAL 4)))
    message(FATAL_ERROR "d2r fit --task classification --method ${method} failed (${code}):\n${out}")
  endif()
  foreach(row train validation test)
    if(NOT out MATCHES "${row} +[0-9.]+ +[0-9.]+\n")
      message(FATAL_ERROR "classification ${method}: no ${row} row in the table:\n${out}")
    endif()
  endforeach()
  if(NOT out MATCHES "test accuracy averaged over the 6 epochs")
    message(FATAL_ERROR "classification ${method}: no accuracy averaged over the learning curve:\n${out}")
  endif()
  if(NOT EXISTS "${dir}/results.json" OR NOT EXISTS "${dir}/curves.csv")
    message(FATAL_ERROR "classification ${method}: results.json or curves.csv missing in ${dir}")
  endif()
  file(READ "${dir}/results.json" json)
  foreach(key d2r_version date device config records final)
    string(JSON t ERROR_VARIABLE e TYPE "${json}" ${key})
    if(e)
      message(FATAL_ERROR "classification ${method}: results.json has no '${key}': ${e}")
    endif()
  endforeach()
  string(JSON m GET "${json}" config method)
  string(JSON task GET "${json}" config task)
  string(JSON nclasses LENGTH "${json}" config data classes)
  if(NOT m STREQUAL method OR NOT task STREQUAL "classification" OR NOT nclasses EQUAL 3)
    message(FATAL_ERROR "classification ${method}: config says method '${m}', task '${task}', ${nclasses} classes")
  endif()
  foreach(part train validation test)
    foreach(metric nll accuracy)
      string(JSON t TYPE "${json}" final ${part} ${metric})
      if(NOT t STREQUAL "NUMBER")
        message(FATAL_ERROR "classification ${method}: final.${part}.${metric} is ${t}, expected a number")
      endif()
    endforeach()
  endforeach()
  string(JSON acc GET "${json}" final test accuracy)
  string(JSON mean_acc GET "${json}" final mean_test_accuracy)
  if(acc LESS 0.8 OR mean_acc LESS 0.5 OR mean_acc GREATER 1)
    message(FATAL_ERROR "classification ${method}: test accuracy ${acc}, averaged over the curve ${mean_acc}: "
                        "these blobs are easy (expected >= 0.8 at the end)")
  endif()
  string(JSON n LENGTH "${json}" records)
  string(JSON t TYPE "${json}" records 5 test accuracy)
  if(NOT n EQUAL 6 OR NOT t STREQUAL "NUMBER")
    message(FATAL_ERROR "classification ${method}: expected 6 epoch records with a test accuracy, got ${n} (${t})")
  endif()
  file(STRINGS "${dir}/curves.csv" lines)
  list(LENGTH lines n)
  list(GET lines 0 header)
  if(NOT n EQUAL 7 OR NOT header STREQUAL "epoch,train_nll,train_accuracy,test_nll,test_accuracy")
    message(FATAL_ERROR "classification ${method}: curves.csv has ${n} lines, header '${header}'")
  endif()
  if(NOT method STREQUAL "nll")
    string(JSON beta GET "${json}" final reward beta)
    string(JSON beta_star GET "${json}" final heuristic_beta)
    if(method STREQUAL "pg" AND NOT beta EQUAL 2)
      message(FATAL_ERROR "classification pg --beta 2 trained with β = ${beta}")
    endif()
    if(method STREQUAL "heuristic" AND NOT beta STREQUAL beta_star)
      message(FATAL_ERROR "classification heuristic: β = ${beta}, β* = ${beta_star}")
    endif()
  endif()
  if(method STREQUAL "bilevel")
    string(JSON n LENGTH "${json}" outer_records)
    string(JSON t TYPE "${json}" outer_records 2 hypergradient)
    if(NOT n EQUAL 3 OR NOT t STREQUAL "NUMBER" OR NOT EXISTS "${dir}/outer_curves.csv")
      message(FATAL_ERROR "classification bilevel: expected 3 outer records and outer_curves.csv, got ${n}:\n${json}")
    endif()
    if(NOT out MATCHES "learned β = [0-9.]+ \\(from 1; outer cross-entropy [0-9.]+; [0-9]+ inner steps in 3 outer steps")
      message(FATAL_ERROR "classification bilevel: no learned β line:\n${out}")
    endif()
  endif()
endforeach()
# The same seed gives the same numbers; a hidden layer and the training rows as outer data work too.
run_d2r(out code fit ${cls_common} --method heuristic --epochs 6 --batch-size 16 --out "${WORK_DIR}/cls_heuristic_again")
file(READ "${WORK_DIR}/cls_heuristic/results.json" a)
file(READ "${WORK_DIR}/cls_heuristic_again/results.json" b)
string(JSON va GET "${a}" final test nll)
string(JSON vb GET "${b}" final test nll)
if(NOT code EQUAL 0 OR NOT va STREQUAL vb)
  message(FATAL_ERROR "classification heuristic twice with one seed: ${va} vs ${vb} (${code}):\n${out}")
endif()
run_d2r(out code fit ${cls_common} --method bilevel --hidden 4 --outer-data train --outer-steps 2
        --inner-steps 3 --val-fraction 0 --out "${WORK_DIR}/cls_bilevel_mlp")
if(NOT code EQUAL 4 OR NOT out MATCHES "MLP 2→\\[4\\]→3" OR NOT out MATCHES "0 validation")
  message(FATAL_ERROR "classification bilevel with a hidden layer and no validation rows failed (${code}):\n${out}")
endif()

# ---------------------------------------------------------------- classification bilevel: resume = uninterrupted
# Windows of 16 of the ~58 training rows (3 per pass), K_in = 5: the checkpoint after outer step 2
# falls in the middle of a pass. Uninterrupted 4 outer steps vs 2, then --resume to 4.
set(cbl_base ${cls_common} --method bilevel --inner-steps 5 --epochs 2 --batch-size 16 --checkpoint-every 2
    --final-model pg)
set(cbl ${cbl_base} --inner-batch-size 16)
run_d2r(out code fit ${cbl} --outer-steps 4 --out "${WORK_DIR}/cls_whole")
if(NOT code EQUAL 4 OR NOT out MATCHES "K_in = 5 inner steps \\(windows of 16 shuffled rows")
  message(FATAL_ERROR "uninterrupted classification bilevel run failed (${code}):\n${out}")
endif()
run_d2r(out code fit ${cbl} --outer-steps 2 --out "${WORK_DIR}/cls_resumed")
if(NOT code EQUAL 4 OR NOT EXISTS "${WORK_DIR}/cls_resumed/checkpoint.ckpt")
  message(FATAL_ERROR "first half of the resumed classification run failed or wrote no checkpoint (${code}):\n${out}")
endif()
run_d2r(out code fit ${cbl} --outer-steps 4 --resume --out "${WORK_DIR}/cls_resumed")
if(NOT code EQUAL 4 OR NOT out MATCHES "resuming from the checkpoint after outer step 2")
  message(FATAL_ERROR "resumed classification run failed (${code}):\n${out}")
endif()
file(READ "${WORK_DIR}/cls_whole/results.json" a)
file(READ "${WORK_DIR}/cls_resumed/results.json" b)
string(JSON na LENGTH "${a}" outer_records)
string(JSON nb LENGTH "${b}" outer_records)
string(JSON rb GET "${b}" resumed_from_step)
string(JSON ib GET "${b}" config inner_batch_size)
if(NOT na EQUAL 4 OR NOT nb EQUAL 4 OR NOT rb EQUAL 2 OR NOT ib EQUAL 16)
  message(FATAL_ERROR "expected 4 outer records in both runs, resumed from 2, inner batch 16: got ${na}, ${nb}, ${rb}, ${ib}")
endif()
foreach(path "final;reward;beta" "final;test;nll" "final;validation;accuracy" "outer_records;1;beta"
        "outer_records;3;beta" "outer_records;3;hypergradient" "outer_records;3;train;nll"
        "outer_records;3;mean_inner_reward" "records;1;test;nll")
  string(JSON va GET "${a}" ${path})
  string(JSON vb GET "${b}" ${path})
  if(NOT va STREQUAL vb)
    message(FATAL_ERROR "resumed classification run differs from the uninterrupted one at ${path}: ${vb} vs ${va}")
  endif()
endforeach()
# Another inner batch size is another run: the resume is refused, naming it, and changes nothing.
file(GLOB before "${WORK_DIR}/cls_resumed/*")
run_d2r(out code fit ${cbl_base} --outer-steps 4 --inner-batch-size 8 --resume --out "${WORK_DIR}/cls_resumed")
if(NOT code EQUAL 2 OR NOT out MATCHES "--resume: .*other settings \\(inner_batch_size\\)")
  message(FATAL_ERROR "expected exit 2 naming inner_batch_size for a resume with other settings, got ${code}:\n${out}")
endif()
file(GLOB after "${WORK_DIR}/cls_resumed/*")
if(NOT before STREQUAL after)
  message(FATAL_ERROR "a refused classification resume changed the directory: ${before} -> ${after}")
endif()

# ---------------------------------------------------------------- bad input: exit 2, message, no files
file(WRITE "${WORK_DIR}/ragged.csv" "x0,x1,y0\n1,2,3\n4,5\n6,7,8\n")
file(WRITE "${WORK_DIR}/text.csv" "x0,x1,y0\n1,2,3\n4,five,6\n7,8,9\n")
file(WRITE "${WORK_DIR}/one_class.csv" "f0,label\n1,a\n2,a\n3,a\n4,a\n5,a\n")
file(WRITE "${WORK_DIR}/text_feature.csv" "f0,f1,label\n1,2,a\n3,4,b\n5,six,a\n7,8,b\n9,10,a\n11,12,b\n")
file(WRITE "${WORK_DIR}/tiny.csv" "f0,label\n1,a\n2,b\n3,a\n4,b\n")
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
    "--targets: the target columns are required|fit~${data}"
    "--label: only for --task classification|fit~${data}~--targets~y0~--label~y1"
    "--epochs: only for --task classification|fit~${data}~--targets~y0~--epochs~3"
    "--label: .*classes\\.csv has no column named 'nope'. available columns: 'f0', 'f1', 'label'|fit~${cls_data}~--task~classification~--label~nope"
    "--label: the label column is required|fit~${cls_data}~--task~classification"
    "classification needs at least two classes, but every row has the label .a.|fit~${WORK_DIR}/one_class.csv~--task~classification~--label~label"
    "text_feature\\.csv line 4, column 2 'f1': expected a finite number, got 'six'|fit~${WORK_DIR}/text_feature.csv~--task~classification~--label~label"
    "tiny\\.csv .*cannot hold out a test share|fit~${WORK_DIR}/tiny.csv~--task~classification~--label~label"
    "--targets: not an option of --task classification|fit~${cls_data}~--task~classification~--label~label~--targets~f0"
    "--steps: not an option of --task classification|fit~${cls_data}~--task~classification~--label~label~--steps~5"
    "--method: a classification is trained by nll, pg, heuristic or bilevel, not 'mse'|fit~${cls_data}~--task~classification~--label~label~--method~mse"
    "--beta: β is set by --method pg .fixed. and bilevel .start., not nll|fit~${cls_data}~--task~classification~--label~label~--beta~2"
    "--beta: expected a finite number > 0, got 0|fit~${cls_data}~--task~classification~--label~label~--method~pg~--beta~0"
    "--outer-data: validation needs validation rows|fit~${cls_data}~--task~classification~--label~label~--method~bilevel~--val-fraction~0~--outer-data~validation"
    "--resume: only a bilevel run can be resumed|fit~${cls_data}~--task~classification~--label~label~--method~nll~--resume"
    "--resume: no checkpoint|fit~${cls_data}~--task~classification~--label~label~--method~bilevel~--resume"
    "--inner-batch-size: expected rows per inner step >= 0 .0: full batch., got -1|fit~${data}~--targets~y0~--method~bilevel~--inner-batch-size~-1"
    "--inner-batch-size: expected rows per inner step >= 0 .0: full batch., got -1|fit~${cls_data}~--task~classification~--label~label~--method~bilevel~--inner-batch-size~-1"
    "--inner-batch-size: not used by --method nll .an option of --method bilevel.|fit~${data}~--targets~y0~--method~nll~--inner-batch-size~8"
    "--inner-batch-size: not used by --method pg --task classification .an option of --method bilevel.|fit~${cls_data}~--task~classification~--label~label~--method~pg~--inner-batch-size~8"
    "--datasets: no data set 'nope' in .*available: iris, wine, breast_cancer|reproduce~tabular~--datasets~iris,nope"
    "--datasets: is an option of `reproduce tabular` only|reproduce~synthetic~--datasets~iris"
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
file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "d2r fit: ok")
