# D2R_SANITIZE=ON: AddressSanitizer + UndefinedBehaviorSanitizer on the host C++ code
# (library host parts, CPU reference, tests, CLI). CUDA device code is checked with
# compute-sanitizer on a GPU machine instead (tools/gpu-run.sh).
function(d2r_enable_sanitizers target)
  if(D2R_SANITIZE)
    # GCC's -Wmaybe-uninitialized is unreliable under the sanitizers' instrumentation (GCC's manual
    # says so for -fsanitize=address; g++ 12 flags std::regex internals); the non-sanitized build
    # keeps the warning.
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all>
      $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()
