#pragma once
/// @file d2r.hpp  Umbrella header: everything a consumer of d2r needs.
#include "d2r/buffer.hpp"
#include "d2r/context.hpp"
#include "d2r/distributions.hpp"
#include "d2r/error.hpp"
#include "d2r/heuristic.hpp"
#include "d2r/network.hpp"
#include "d2r/objectives.hpp"
#include "d2r/second_order.hpp"
#include "d2r/solvers.hpp"
#include "d2r/optim.hpp"
#include "d2r/version.hpp"
#include "d2r/view.hpp"
