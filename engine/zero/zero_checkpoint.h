// The StateLayout (engine/schema/state_layout.h) of a training run's checkpoint blobs: what each
// blob of Optimizer::blobs holds, as a range of a slice of the full model state, so that a
// checkpoint written by N ZeRO ranks is read back by M (or by one process exporting it).
//
// Per blob: a master weights blob and an elementwise state buffer (AdamW's moments, Adafactor's
// first moment, SM3's momentum) cover the rank's element range of the slice (ZeroOptimizer::
// owned; the whole slice without ZeRO and in stage 0, where every rank keeps everything); a
// factored state buffer (Adafactor's second moment, SM3's accumulators) covers the factored
// statistics of the rank's parameters (Adafactor and SM3 ranges hold whole parameters).
//
// Thread safety: a pure function of its arguments, which it only reads.
#pragma once

#include "engine/optim/model_state.h"
#include "engine/optim/optimizer.h"
#include "engine/schema/state_layout.h"
#include "engine/zero/zero.h"

namespace ebb {

// The layout of `optimizer.blobs()`: `optimizer` steps `full` (no ZeRO: `zero` null, rank 0 of
// 1) or is zero->optimizer() of rank `rank` of `ranks`. kInternal for a blob whose name is not
// one Optimizer::blobs gives.
Result<StateLayout> checkpoint_state_layout(const ModelState& full, const Optimizer& optimizer,
                                            const ZeroOptimizer* zero, int rank, int ranks);

}  // namespace ebb
