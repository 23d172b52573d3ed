#pragma once
/// @file types/optim.hpp
/// Plain types of the optimisers (d2r/optim.hpp): Adam's options and state. Compiles without CUDA.

#include <cstdint>

#include "d2r/view.hpp"

namespace d2r {

/// Hyperparameters of Adam. With weight_decay > 0 the decay is decoupled (AdamW): the
/// parameters are multiplied by 1 − learning_rate·weight_decay before the Adam update, and the
/// gradient is not modified.
template <class T>
struct AdamOptions {
  T learning_rate = T(1e-3);  ///< lr > 0, finite
  T beta1 = T(0.9);           ///< decay of the first moment, in [0, 1)
  T beta2 = T(0.999);         ///< decay of the second moment, in [0, 1)
  T epsilon = T(1e-8);        ///< > 0, added to the bias-corrected sqrt of the second moment
  T weight_decay = T(0);      ///< >= 0; decoupled (AdamW) when > 0
};

/// Calls f(name, value) for every field of `o`, in declaration order (fields.hpp: checkpoint
/// fingerprints and the program's JSON of its settings walk these; a new field goes here too).
template <class T, class F>
void for_each_field(const AdamOptions<T>& o, F&& f) {
  f("learning_rate", o.learning_rate);
  f("beta1", o.beta1);
  f("beta2", o.beta2);
  f("epsilon", o.epsilon);
  f("weight_decay", o.weight_decay);
}

/// The state Adam carries from step to step, in the backend's memory (device memory on cuda).
/// `first_moment` and `second_moment` have the length of the parameters; `step` is one element
/// counting the updates made so far (0 after adam_reset). Checkpoint all three to resume a run
/// bit-identically.
template <class T>
struct AdamState {
  VectorView<T> first_moment;
  VectorView<T> second_moment;
  VectorView<std::int64_t> step;
};

}  // namespace d2r
