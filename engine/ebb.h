// ebb: the one header a training loop includes. It brings the Engine (tensors, ops, views,
// in-place updates, iterations, dynamic eviction, plans), the typed ops, the model state
// (flat buffers, precision, optimizers, loss scaling: engine/optim/), the Profile, and the device
// and allocator types the engine's options and accessors use. The planner is not in it
// (engine/planner/, library ebb_planner).
#pragma once

#include "allocator/allocator_stats.h"    // IWYU pragma: export
#include "allocator/caching_allocator.h"  // IWYU pragma: export
#include "allocator/pinned_host_pool.h"   // IWYU pragma: export
#include "engine/engine.h"                // IWYU pragma: export
#include "engine/nn_ops.h"                // IWYU pragma: export
#include "engine/optim/loss_scaler.h"     // IWYU pragma: export
#include "engine/optim/model_state.h"     // IWYU pragma: export
#include "engine/optim/optimizer.h"       // IWYU pragma: export
#include "engine/optim/precision.h"       // IWYU pragma: export
#include "engine/residency/eviction.h"    // IWYU pragma: export
#include "engine/runtime/tape.h"          // IWYU pragma: export
#include "engine/runtime/tensor.h"        // IWYU pragma: export
#include "engine/schema/profile.h"        // IWYU pragma: export
#include "engine/schema/tensor_kind.h"    // IWYU pragma: export
#include "engine/zero/zero.h"             // IWYU pragma: export
#include "kernels/comm/communicator.h"    // IWYU pragma: export
#include "kernels/device.h"               // IWYU pragma: export
#include "kernels/status.h"               // IWYU pragma: export
