#pragma once
// The cpu backend of the MLP trunk (d2r/network.hpp): the computation of the reference loops in
// host/reference/network.hpp (same layouts, same arguments, same outputs written), with the
// matrix products through OpenBLAS (cblas_sgemm / cblas_dgemm, row-major, views of any row
// stride). Bias add, activation, σ', σ'', LayerNorm (the reference's own row loops) and the
// bias-gradient column sums are plain loops; the column sums run over the rows in order, so they
// are deterministic (and bitwise those of the reference). OpenBLAS keeps its default thread count; its GEMMs split the output, never the
// sum, among threads, so for a given thread count the results are the same run to run. Built
// with the CMake option D2R_WITH_OPENBLAS=OFF, the GEMMs are plain loops instead.
//
// Internal: arguments are already validated by the Mlp entry points (host/src/network.cpp).
// Instantiated for float and double in cpu_blas.cpp.

#include <cstdint>

#include "d2r/network.hpp"
#include "d2r/view.hpp"

namespace d2r::cpu_blas {

/// out = MLP(x); writes the hidden activations into `cache` (see reference::network::mlp_forward).
template <class T>
void mlp_forward(const Mlp& net, VectorView<const T> params, MatrixView<const T> x, T* cache, MatrixView<T> out);

/// Overwrites d_params (and d_x when not empty). `scratch`: reference::network::mlp_scratch_elements(net, B, false).
template <class T>
void mlp_backward(const Mlp& net, VectorView<const T> params, MatrixView<const T> x, const T* cache,
                  MatrixView<const T> d_out, T* d_params, MatrixView<T> d_x, T* scratch);

/// out_tangent = J·v; writes Ra_l into `tangent_cache` (see reference::network::mlp_forward_tangent).
template <class T>
void mlp_forward_tangent(const Mlp& net, VectorView<const T> params, VectorView<const T> v, MatrixView<const T> x,
                         const T* cache, T* tangent_cache, MatrixView<T> out_tangent);

/// Overwrites d_params_tangent. `scratch`: reference::network::mlp_scratch_elements(net, B, true).
template <class T>
void mlp_backward_tangent(const Mlp& net, VectorView<const T> params, VectorView<const T> v, MatrixView<const T> x,
                          const T* cache, const T* tangent_cache, MatrixView<const T> d_out,
                          MatrixView<const T> d_out_tangent, T* d_params_tangent, T* scratch);

}  // namespace d2r::cpu_blas
