#include "engine/runtime/tape.h"

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

void TensorTable::retire(std::uint32_t slot, bool remember_name) {
  TensorRecord& r = records_[slot];
  if (remember_name) retired_names_.emplace(id_of(slot), std::move(r.name));
  const std::uint32_t generation = r.generation;
  r = TensorRecord{};
  r.generation = generation;
  free_slots_.push_back(slot);
}

const std::string* TensorTable::retired_name(std::uint64_t id) const {
  auto it = retired_names_.find(id);
  return it != retired_names_.end() ? &it->second : nullptr;
}

void Tape::clear() {
  for (OpRecord& op : ops_) {
    op.writes.clear();
    op.input_offsets.clear();
    for (std::vector<std::uint32_t>* slots : {&op.inputs, &op.outputs}) {
      slots->clear();
      spare_slot_lists_.push_back(std::move(*slots));
    }
  }
  ops_.clear();
}

std::vector<std::uint32_t> Tape::take_slot_list() {
  if (spare_slot_lists_.empty()) return {};
  std::vector<std::uint32_t> slots = std::move(spare_slot_lists_.back());
  spare_slot_lists_.pop_back();
  return slots;
}

std::uint32_t Tape::intern(std::string_view name) {
  if (auto it = name_ids_.find(name); it != name_ids_.end()) return it->second;
  const auto id = static_cast<std::uint32_t>(names_.size());
  name_ids_.emplace(std::string(name), id);
  names_.emplace_back();
  return id;
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

namespace {

// recoverable(), walked with an explicit stack (a chain of dropped tensors can be as long as the
// tape). `Memo` answers known(s) (0 unknown, 1 recoverable, 2 not) and records yes(s) / no(s).
template <typename Memo>
bool walk_recoverable(const TensorTable& tensors, const std::vector<OpRecord>& tape,
                      std::uint32_t slot, Memo& memo) {
  if (const std::uint8_t known = memo.known(slot); known != 0) return known == 1;
  const auto replayable = [&](std::uint32_t s) {
    const TensorRecord& r = tensors.at(s);
    return r.has_producer() && !tape[static_cast<std::size_t>(r.producer)].stale;
  };
  struct Frame {
    std::uint32_t slot;
    std::size_t next;  // the producer's next input to look at
  };
  std::vector<Frame> stack;
  const auto fail = [&](std::uint32_t s) {
    memo.no(s);
    for (const Frame& f : stack) memo.no(f.slot);
    return false;
  };
  if (!replayable(slot)) return fail(slot);
  stack.push_back({slot, 0});
  while (!stack.empty()) {
    Frame& f = stack.back();
    const std::vector<std::uint32_t>& inputs =
        tape[static_cast<std::size_t>(tensors.at(f.slot).producer)].inputs;
    if (f.next == inputs.size()) {
      memo.yes(f.slot);
      stack.pop_back();
      continue;
    }
    const std::uint32_t input = inputs[f.next++];
    if (tensors.at(input).residency != Residency::kDropped) continue;
    const std::uint8_t known = memo.known(input);
    if (known == 1) continue;
    if (known == 2 || !replayable(input)) return fail(input);
    stack.push_back({input, 0});  // the tape is acyclic: never a tensor on the stack already
  }
  return true;
}

struct ByteMemo {
  std::vector<std::uint8_t>& memo;
  std::uint8_t known(std::uint32_t s) const { return memo[s]; }
  void yes(std::uint32_t s) { memo[s] = 1; }
  void no(std::uint32_t s) { memo[s] = 2; }
};

// Positive answers only, valid while their epoch is the current one.
struct EpochMemo {
  std::vector<std::uint32_t>& proven;
  std::uint32_t epoch;
  std::uint8_t known(std::uint32_t s) const { return proven[s] == epoch ? 1 : 0; }
  void yes(std::uint32_t s) { proven[s] = epoch; }
  void no(std::uint32_t /*s*/) {}
};

}  // namespace

bool recoverable(const TensorTable& tensors, const std::vector<OpRecord>& tape, std::uint32_t slot,
                 std::vector<std::uint8_t>& memo) {
  if (memo.size() < tensors.slot_count()) memo.resize(tensors.slot_count(), 0);
  ByteMemo m{memo};
  return walk_recoverable(tensors, tape, slot, m);
}

bool recoverable(const TensorTable& tensors, const std::vector<OpRecord>& tape, std::uint32_t slot,
                 std::vector<std::uint32_t>& proven, std::uint32_t epoch) {
  if (proven.size() < tensors.slot_count()) proven.resize(tensors.slot_count(), 0);
  EpochMemo m{proven, epoch};
  return walk_recoverable(tensors, tape, slot, m);
}

std::vector<std::vector<std::uint32_t>> tape_readers(const TensorTable& tensors,
                                                     const std::vector<OpRecord>& tape) {
  std::vector<std::vector<std::uint32_t>> readers(tensors.slot_count());
  for (std::uint32_t op = 0; op < tape.size(); ++op) {
    for (std::uint32_t input : tape[op].inputs) readers[input].push_back(op);
  }
  return readers;
}

namespace {

// Marks the inputs of the producers of the `roots` tensors, and of the inputs `through` accepts,
// recursively.
template <typename Root, typename Through>
std::vector<bool> mark_replay_reads(const TensorTable& tensors, const std::vector<OpRecord>& tape,
                                    Root&& root, Through&& through) {
  std::vector<bool> marked(tensors.slot_count(), false);
  std::vector<std::uint32_t> pending;
  for (std::uint32_t slot = 0; slot < tensors.slot_count(); ++slot) {
    const TensorRecord& r = tensors.at(slot);
    if (r.live && !r.released && r.has_producer() && root(r)) pending.push_back(slot);
  }
  while (!pending.empty()) {
    const TensorRecord& r = tensors.at(pending.back());
    pending.pop_back();
    for (std::uint32_t input : tape[static_cast<std::size_t>(r.producer)].inputs) {
      if (marked[input]) continue;
      marked[input] = true;
      const TensorRecord& in = tensors.at(input);
      if (in.has_producer() && through(in)) pending.push_back(input);
    }
  }
  return marked;
}

}  // namespace

std::vector<bool> replay_inputs(const TensorTable& tensors, const std::vector<OpRecord>& tape) {
  const auto dropped = [](const TensorRecord& r) { return r.residency == Residency::kDropped; };
  return mark_replay_reads(tensors, tape, dropped, dropped);
}

std::vector<bool> replay_sources(const TensorTable& tensors, const std::vector<OpRecord>& tape) {
  // A tensor whose producer is stale is never replayed.
  const auto replayable = [&](const TensorRecord& r) {
    return !tape[static_cast<std::size_t>(r.producer)].stale;
  };
  return mark_replay_reads(tensors, tape, replayable, [&](const TensorRecord& r) {
    return (r.residency == Residency::kDropped || r.released) && replayable(r);
  });
}

}  // namespace ebb
