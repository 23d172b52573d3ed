#pragma once
/// @file types/cuda.hpp
/// The CUDA handle types the API and the program name (cudaStream_t, cudaEvent_t, cublasHandle_t).
/// With the cuda backend (D2R_WITH_CUDA) they come from the CUDA runtime and cuBLAS headers; in a
/// cpu-only build they are the same opaque pointer typedefs, declared here, so the public headers
/// and the launch headers compile with no CUDA toolkit installed.

#include "d2r/config.hpp"

#if D2R_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#else
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;  // NOLINT(modernize-use-using): the runtime's own spelling
struct CUevent_st;
typedef struct CUevent_st* cudaEvent_t;  // NOLINT(modernize-use-using)
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;  // NOLINT(modernize-use-using)
#endif
