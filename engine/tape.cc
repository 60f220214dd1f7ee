#include "engine/tape.h"

#include <algorithm>
#include <utility>

namespace ebb {

LaunchPointers::LaunchPointers(std::span<void* const> pointers) : size_(pointers.size()) {
  if (size_ <= kInline) {
    std::copy(pointers.begin(), pointers.end(), inline_.begin());
  } else {
    spilled_.assign(pointers.begin(), pointers.end());
  }
}

std::uint32_t TensorTable::add(TensorRecord record) {
  std::uint32_t slot = 0;
  std::uint32_t generation = 1;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
    generation = records_[slot].generation + 1;
  } else {
    slot = static_cast<std::uint32_t>(records_.size());
    records_.emplace_back();
  }
  record.generation = generation;
  record.live = true;
  records_[slot] = std::move(record);
  return slot;
}

TensorRecord* TensorTable::find(std::uint64_t id) {
  const std::uint32_t slot = slot_of(id);
  if (slot >= records_.size()) return nullptr;
  TensorRecord& r = records_[slot];
  if (!r.live || make_id(slot, r.generation) != id) return nullptr;
  return &r;
}

const TensorRecord* TensorTable::find(std::uint64_t id) const {
  return const_cast<TensorTable*>(this)->find(id);
}

void TensorTable::retire(std::uint32_t slot) {
  TensorRecord& r = records_[slot];
  const std::uint32_t generation = r.generation;
  r = TensorRecord{};
  r.generation = generation;
  free_slots_.push_back(slot);
}

std::int64_t recompute_cost_ns(const TensorTable& tensors, const std::vector<OpRecord>& tape,
                               std::uint32_t slot, std::vector<std::int64_t>& memo) {
  if (memo.size() < tensors.slot_count()) memo.resize(tensors.slot_count(), -1);
  if (memo[slot] >= 0) return memo[slot];
  const TensorRecord& r = tensors.at(slot);
  const OpRecord& op = tape[static_cast<std::size_t>(r.producer)];
  std::int64_t cost = op.cost_ns;
  for (std::uint32_t input : op.inputs) {
    const TensorRecord& in = tensors.at(input);
    if (in.residency == Residency::kDropped && in.has_producer()) {
      cost += recompute_cost_ns(tensors, tape, input, memo);
    }
  }
  memo[slot] = cost;
  return cost;
}

}  // namespace ebb
