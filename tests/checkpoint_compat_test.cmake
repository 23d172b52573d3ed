# A checkpoint written by an earlier d2r (tests/data/checkpoint_compat) must still resume with the
# same settings, and be refused (exit 2, the setting named) with another one: by the settings file
# checkpoint.json, and without that file by the checkpoint's own fingerprint.
# Invoked by ctest with -DD2R=<program> -DFIXTURE=<fixture folder> -DWORK=<scratch folder>.
# The fixture's run used the recommended preset's defaults of its time; those that changed since are given.
set(args fit ${FIXTURE}/data.csv --targets y1,y2 --method bilevel --hidden 8 --device cpu -q
    --inner-tolerance 0.1 --flat-tolerance 0.5 --patience 0)
function(resume_copy name)
  file(REMOVE_RECURSE ${WORK}/${name})
  file(MAKE_DIRECTORY ${WORK}/${name})
  file(COPY ${FIXTURE}/checkpoint.ckpt ${FIXTURE}/checkpoint.json DESTINATION ${WORK}/${name})
endfunction()

resume_copy(same)
execute_process(COMMAND "${D2R}" ${args} --outer-steps 4 --resume --out ${WORK}/same
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code EQUAL 4 OR NOT out MATCHES "resuming from the checkpoint after outer step 3")
  message(FATAL_ERROR "the earlier checkpoint did not resume (exit ${code}, expected 4 step_limited):\n${out}${err}")
endif()
file(READ ${WORK}/same/results.json results)
if(NOT results MATCHES "\"resumed_from_step\": 3" OR NOT results MATCHES "\"steps_done\": 4")
  message(FATAL_ERROR "results.json of the resumed run does not say 3 steps resumed, 4 done:\n${results}")
endif()
# The earlier checkpoint holds no best outer step: the choice of --final-model best restarts at its last step,
# and results.json says so (final.model.tracked_from_step and a warning).
string(JSON from GET "${results}" final model tracked_from_step)
string(JSON source GET "${results}" final model source)
string(JSON model_step GET "${results}" final model outer_step)
if(NOT from EQUAL 3 OR NOT source MATCHES "^best$" OR model_step LESS 3 OR NOT results MATCHES "chosen among outer steps 3 onwards")
  message(FATAL_ERROR "the resumed earlier checkpoint: model ${source} of step ${model_step}, tracked from ${from} "
                      "(expected best, >= 3, 3, and a warning):\n${results}")
endif()

resume_copy(other)
execute_process(COMMAND "${D2R}" ${args} --outer-steps 4 --damping 0.5 --resume --out ${WORK}/other
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code EQUAL 2 OR NOT err MATCHES "damping: saved 0.001, now 0.5")
  message(FATAL_ERROR "a resume with another --damping was not refused by checkpoint.json (exit ${code}):\n${out}${err}")
endif()

resume_copy(alone)
file(REMOVE ${WORK}/alone/checkpoint.json)
execute_process(COMMAND "${D2R}" ${args} --outer-steps 4 --damping 0.5 --resume --out ${WORK}/alone
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code EQUAL 2 OR NOT err MATCHES "options.cg.damping: saved 0.001, now 0.5")
  message(FATAL_ERROR "a resume with another --damping was not refused by the fingerprint (exit ${code}):\n${out}${err}")
endif()
