# `d2r fit --method bilevel --preset stationary` (issue 13): every outer step retrains the inner policy from one
# fixed start to stationarity, so the outer loss is a function of the reward alone. Checked on the shipped tabular
# sets through the program:
#   1. sonar from β = 1 and from β = 10 (an order of magnitude apart) both converge (exit 0) to the same reward
#      (within 10 %: measured 0.566 and 0.583) and the same validation loss (within 0.002: 0.537 and 0.538); the
#      recommended preset's warm start reports β₀ itself from both (README);
#   2. the reward reproduces the model: `fit --preset stationary --beta B --outer-steps 1` at the reported B gives
#      the returned model's validation loss again (within 2e-6: float decimals);
#   3. a move after which the outer loss rose by more than --loss-tolerance is undone whatever the hypergradient's
#      sign (digits: β 2.98 -> 4.91 raised the loss 0.111 -> 0.146 onto a plateau where the hypergradient counts
#      as flat, and without the rule the run stayed there); at least one such move must occur;
#   4. the solve falls back to normal CG where CG does not converge: sonar from β = 10 with `--solver cg` warns
#      that the solve missed its tolerance, the preset's cg_or_normal_cg does not.
# Invoked by ctest with -DD2R=<program> -DWORK_DIR=<scratch> -DDATA_DIR=<the repository's data/>.
include(${CMAKE_CURRENT_LIST_DIR}/cli_bilevel_support.cmake)


function(check_near what a b within)  # |a - b| <= within millionths
  decimal_micro("${a}" ma)
  decimal_micro("${b}" mb)
  math(EXPR d "${ma} - ${mb}")
  if(d GREATER within OR d LESS -${within})
    message(FATAL_ERROR "${what}: ${a} and ${b} differ by more than ${within} millionths")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(common --task classification --label label --method bilevel --device cpu --preset stationary -q)

# ---------------------------------------------------------------- 1. sonar from two starts
foreach(beta 1 10)
  run_d2r(out code fit "${DATA_DIR}/tabular/sonar.csv" ${common} --beta ${beta} --out "${WORK_DIR}/sonar_${beta}")
  if(NOT code EQUAL 0 OR NOT out MATCHES "verdict: converged")
    message(FATAL_ERROR "sonar from β = ${beta}: expected exit 0 and `verdict: converged`, got ${code}:\n${out}")
  endif()
  file(READ "${WORK_DIR}/sonar_${beta}/results.json" json)
  string(JSON beta_${beta} GET "${json}" final reward beta)
  string(JSON trained_${beta} GET "${json}" final model trained_at_beta)
  string(JSON loss_${beta} GET "${json}" final validation nll)
  message(STATUS "sonar from β = ${beta}: β ${beta_${beta}}, validation cross-entropy ${loss_${beta}}")
  check_near("sonar from β = ${beta}: the reported β and the one its model was trained at" "${beta_${beta}}"
             "${trained_${beta}}" 0)
endforeach()
# Same reward within 10 %: |β₁ − β₁₀| <= 0.1 · max(β₁, β₁₀) (the β are below 10, so millionths fit math()).
decimal_micro("${beta_1}" b1)
decimal_micro("${beta_10}" b10)
math(EXPR diff "${b1} - ${b10}")
if(diff LESS 0)
  math(EXPR diff "-${diff}")
endif()
set(larger ${b1})
if(b10 GREATER b1)
  set(larger ${b10})
endif()
math(EXPR allowed "${larger} / 10")
if(diff GREATER allowed)
  message(FATAL_ERROR "sonar: from β = 1 the run reports ${beta_1}, from β = 10 ${beta_10}: more than 10 % apart")
endif()
check_near("sonar: the validation losses from the two starts" "${loss_1}" "${loss_10}" 2000)

# ---------------------------------------------------------------- 2. the reward reproduces the model
foreach(beta 1 10)
  run_d2r(out code fit "${DATA_DIR}/tabular/sonar.csv" ${common} --beta ${beta_${beta}} --outer-steps 1
          --out "${WORK_DIR}/again_${beta}")
  if(NOT code EQUAL 4)  # one outer step: step_limited
    message(FATAL_ERROR "sonar at β = ${beta_${beta}} for one outer step: expected exit 4, got ${code}:\n${out}")
  endif()
  file(READ "${WORK_DIR}/again_${beta}/results.json" json)
  string(JSON again GET "${json}" outer_records 0 outer_loss)
  message(STATUS "sonar: a new run at β = ${beta_${beta}}: outer loss ${again} (the returned model's ${loss_${beta}})")
  check_near("sonar from β = ${beta}: the returned model's validation loss and a new run's at its β" "${again}"
             "${loss_${beta}}" 2)
endforeach()

# ---------------------------------------------------------------- 3. a rise is undone whatever the sign
run_d2r(out code fit "${DATA_DIR}/tabular/digits.csv" ${common} --beta 1 --out "${WORK_DIR}/digits")
if(NOT code EQUAL 0)
  message(FATAL_ERROR "digits: expected exit 0 (converged), got ${code}:\n${out}")
endif()
file(READ "${WORK_DIR}/digits/results.json" json)
string(JSON tolerance GET "${json}" config stopping loss_tolerance)
decimal_micro("${tolerance}" tol)
string(JSON n LENGTH "${json}" outer_records)
# Record i holds the outer loss at the reward before its move and the reward after it.
set(rises 0)
math(EXPR last "${n} - 1")
foreach(i RANGE 2 ${last})
  math(EXPR p "${i} - 1")
  math(EXPR pp "${i} - 2")
  string(JSON beta_i GET "${json}" outer_records ${i} beta)
  string(JSON beta_p GET "${json}" outer_records ${p} beta)
  string(JSON beta_pp GET "${json}" outer_records ${pp} beta)
  string(JSON loss_i GET "${json}" outer_records ${i} outer_loss)
  string(JSON loss_p GET "${json}" outer_records ${p} outer_loss)
  decimal_micro("${loss_i}" li)
  decimal_micro("${loss_p}" lp)
  math(EXPR rise "${li} - ${lp}")
  if(NOT beta_p STREQUAL beta_pp AND rise GREATER tol)
    math(EXPR rises "${rises} + 1")
    message(STATUS "digits: the move ${beta_pp} -> ${beta_p} raised the outer loss ${loss_p} -> ${loss_i} (${rise} > ${tol} millionths); "
                   "the next reward is ${beta_i}")
    check_near("digits: the reward after undoing the move ${beta_pp} -> ${beta_p}" "${beta_i}" "${beta_pp}" 2)
  endif()
endforeach()
if(rises EQUAL 0)
  message(FATAL_ERROR "digits: no move raised the outer loss by more than ${tolerance}: the undo rule was not exercised")
endif()

# ---------------------------------------------------------------- 4. the solver's fallback
foreach(solver cg cg_or_normal_cg)
  run_d2r(out code fit "${DATA_DIR}/tabular/sonar.csv" ${common} --beta 10 --solver ${solver}
          --out "${WORK_DIR}/solver_${solver}")
  file(READ "${WORK_DIR}/solver_${solver}/results.json" json)
  string(JSON warnings GET "${json}" warnings)
  if(warnings MATCHES "linear solve missed")
    set(missed_${solver} TRUE)
  else()
    set(missed_${solver} FALSE)
  endif()
  message(STATUS "sonar from β = 10, --solver ${solver}: exit ${code}, a solve missed its tolerance: ${missed_${solver}}")
endforeach()
if(NOT missed_cg)
  message(FATAL_ERROR "sonar from β = 10: plain CG met its tolerance at every step, so the fallback is not exercised")
endif()
if(missed_cg_or_normal_cg)
  message(FATAL_ERROR "sonar from β = 10: with cg_or_normal_cg a solve still missed its tolerance")
endif()
