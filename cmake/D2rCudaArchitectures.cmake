# Chooses CMAKE_CUDA_ARCHITECTURES before project() enables CUDA.
# Default: A100 machine code + H100 machine code and PTX (so newer GPUs JIT from sm_90 PTX).
# Never "native": it fails at configure time on machines without a GPU (CI, laptops).
set(D2R_DEFAULT_CUDA_ARCHITECTURES "80-real;90" CACHE STRING
    "CUDA architectures used when CMAKE_CUDA_ARCHITECTURES is not given")
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES "${D2R_DEFAULT_CUDA_ARCHITECTURES}" CACHE STRING "CUDA architectures" FORCE)
endif()
if(CMAKE_CUDA_ARCHITECTURES MATCHES "native|all")
  message(FATAL_ERROR "d2r: CMAKE_CUDA_ARCHITECTURES='${CMAKE_CUDA_ARCHITECTURES}' is not allowed; "
                      "give an explicit list such as '80-real;90' (native fails without a GPU).")
endif()
