#pragma once
// Checks of reward parameters and transform options, shared by the reward, PG and exact
// objective entry points. Internal header.

#include <string_view>

#include "d2r/objectives.hpp"
#include "host/src/validate.hpp"

namespace d2r::detail {

/// params has reward_param_count(form, dim) entries in the backend's memory; with value checks,
/// every entry finite and U positive definite (u > 0, U_ii > 0, or R_ii > 0).
template <class T>
void check_reward(Context& ctx, std::string_view function, const MahalanobisReward<T>& reward, std::int64_t dim);

/// Transform options valid for G generations (G >= 2 for leave_one_out and standardize,
/// finite γ, ε > 0).
template <class T>
void check_transform(std::string_view function, const TransformOptions<T>& options, std::int64_t generations);

}  // namespace d2r::detail
