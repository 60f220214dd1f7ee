// The engine's tables for one run: TensorRecord (a tensor's description and where its bytes
// are), OpRecord (one op of the current iteration's tape: what it read, what it wrote, its
// replayable closure and its measured cost), TensorTable (records by slot, with generations
// so that a stale handle is recognised, and the logical clock that dates every use) and Tape
// (the iteration's ops, and what the engine knows of each op name across iterations).
//
// A tensor's storage is in one of four states (Residency): on the device; on host only (a
// swapped tensor: a pinned host copy, the device block freed); on NVMe only (spilled when the
// host tier was full); or dropped (no bytes anywhere, recomputable by replaying its producer from
// the tape). A resident tensor may also keep its
// host copy ("clean copy"): tensors are immutable, so evicting it again costs no copy.
//
// Thread safety: not thread-safe; the engine's driving thread owns these tables.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/runtime/tensor.h"
#include "engine/schema/tensor_kind.h"
#include "kernels/device.h"
#include "offload/transfer_engine.h"

namespace ebb {

// What an op's closure receives: device pointers of its inputs (read only) and outputs (to
// write), and the stream it runs on. On the cpu device the pointers are host addresses.
struct OpArgs {
  std::span<const void* const> inputs;
  std::span<void* const> outputs;
  const LaunchContext& launch;
};

// An op's body. It must be a pure function of its inputs (an RNG seed is an input) and must not
// write its inputs: the engine replays it to recompute a dropped output, and the replay must
// give the same bits. It must be copyable: the engine keeps it on the tape.
using OpFn = std::function<void(const OpArgs&)>;

// One op's name and closure, shared by its tape entry and every launch of it (the launch runs on
// a stream's thread after run() has returned).
struct OpCode {
  std::string name;
  OpFn fn;
};

// The device pointers of one launch (inputs, then outputs), held inline up to kInline of them so
// that a launch's kernel closure, which owns them, costs one allocation rather than two.
class LaunchPointers {
 public:
  static constexpr std::size_t kInline = 6;

  explicit LaunchPointers(std::span<void* const> pointers);
  std::span<void* const> all() const {
    return {size_ <= kInline ? inline_.data() : spilled_.data(), size_};
  }

 private:
  std::size_t size_ = 0;
  std::array<void*, kInline> inline_{};
  std::vector<void*> spilled_;  // used when size_ > kInline
};

enum class Residency : std::uint8_t {
  kDevice,   // device_ptr holds the bytes (host_ptr may hold a clean copy)
  kHost,     // host_ptr holds the bytes; no device block
  kDropped,  // no bytes; recomputable from the producer (or never needed again)
  kNvme,     // nvme_extent holds the bytes, in the engine's NVMe tier; no device block
};

inline constexpr std::int32_t kNoProducer = -1;
inline constexpr std::uint32_t kNoBase = 0xFFFFFFFFU;

// How a gathered tensor (Engine::make_gathered: ZeRO stage 3's full parameters) gets its bytes
// back: a collective on the transfer engine's communication lane that reads `sources` (storage
// slots, locked while it runs) and writes the tensor's block.
struct GatherRecipe {
  std::vector<std::uint32_t> sources;
  // The kernel, from the destination block and the sources' device pointers (in order).
  std::function<Kernel(void* dst, const std::vector<void*>& sources)> make;
  std::chrono::nanoseconds cost{0};  // its modelled time (a sim device's clock)
};

struct TensorRecord {
  std::string name;
  std::vector<std::int64_t> shape;
  DType dtype = DType::kF32;
  TensorKind kind = TensorKind::kActivation;
  std::size_t bytes = 0;  // as the spec asks; the device block may be larger (rounded)

  std::uint32_t generation = 0;  // bumped each time the slot is reused
  bool live = false;             // the slot holds a tensor of the current generation
  // The user released it: no handle may use it again, but it stays in the table until the
  // iteration ends because a dropped tensor may need it for recompute (see Engine::release).
  bool released = false;
  bool carried = false;  // survives end_iteration (parameters, keep(), made outside iterations)

  Residency residency = Residency::kDropped;
  void* device_ptr = nullptr;
  void* host_ptr = nullptr;  // pinned host copy, from the engine's HostTier
  // The last copy from or to host_ptr (offload/transfer_engine.h); null when there was none.
  std::shared_ptr<Transfer> host_copy;
  // host_copy is a copy back into device_ptr (a prefetch) that the compute stream has not
  // waited for yet: it must before the block is read or freed.
  bool arrival_pending = false;
  // While arrival_pending: the id the prefetch was given (0: none), for late-arrival feedback.
  std::uint32_t prefetch_id = 0;
  std::uint64_t nvme_extent = 0;  // the NVMe tier's ExtentId of a spilled tensor; 0 = none
  // Engine::discard: kDropped with no bytes anywhere, and its next use finds zeros (a carried
  // tensor whose contents the loop no longer needs: ZeRO stage 2's reduced gradient buffers).
  bool discarded = false;
  // A gathered tensor: once discarded, it comes back by `gather` rather than as zeros.
  std::shared_ptr<const GatherRecipe> gather;
  // host_copy is a gather that the compute stream has not waited for yet: the tensor and its
  // recipe's sources are locked until it has (Pager::settle_arrival).
  bool gather_in_flight = false;

  int lock_count = 0;                   // > 0 while an op (or a recompute) needs it resident
  std::uint64_t last_access = 0;        // TensorTable::tick() of its last use
  std::int32_t producer = kNoProducer;  // index into the tape, within the current iteration
  std::uint32_t consumers = 0;          // tape ops of the current iteration that read it

  // A view (Engine::view) holds no bytes of its own: the tensor in slot `base` holds them, from
  // byte `base_offset`. Every residency field above is its base's business (a view's stay at
  // their defaults); ops, the profiler and the executor see the base. kNoBase: not a view.
  std::uint32_t base = kNoBase;
  std::size_t base_offset = 0;
  std::uint32_t views = 0;  // live views of this tensor (it cannot be released while any is)

  bool has_producer() const { return producer != kNoProducer; }
  bool is_view() const { return base != kNoBase; }
};

struct OpRecord {
  std::shared_ptr<const OpCode> code;
  std::uint32_t name_id = 0;          // the engine's interned id of code->name
  std::vector<std::uint32_t> inputs;  // tensor slots, in argument order (may repeat)
  // Where an input was passed as a view: its byte offset into the input's storage, per input, so
  // that a replay hands the op the pointer it was first given. Empty when no input is a view.
  std::vector<std::size_t> input_offsets;
  std::vector<std::uint32_t> outputs;  // tensor slots; each has this op as producer
  // An in-place op (Engine::update): the slots it writes (and may read), none of them produced on
  // the tape. It has no outputs and is never replayed.
  std::vector<std::uint32_t> writes;
  // An in-place op wrote one of this op's inputs after it ran: a replay would not give the same
  // bits, so its outputs can no longer be rebuilt by replay (recoverable() says so).
  bool stale = false;
  // Measured, or the last known cost of the name, or 1 µs. After the warm-up not every op is
  // timed (Engine::run), so this is usually the name's last measured cost.
  std::int64_t cost_ns = 1000;
  // The cost given to run() (0 = none): passed to every launch of the op; when > 0 it is also
  // cost_ns, and measurements do not replace it.
  std::chrono::nanoseconds given_cost{0};
};

// Tensor records by slot. Ids are (generation << 32) | slot, so a handle to a released tensor
// never finds the slot's next occupant. The table also keeps a logical clock, advanced once per
// engine call that uses tensors, that dates each use (staleness for eviction), and the names of
// the tensors the last end of iteration retired (for the message of a use after release).
class TensorTable {
 public:
  static std::uint64_t make_id(std::uint32_t slot, std::uint32_t generation) {
    return (std::uint64_t{generation} << 32) | slot;
  }
  static std::uint32_t slot_of(std::uint64_t id) { return static_cast<std::uint32_t>(id); }

  // A fresh live record; returns its slot.
  std::uint32_t add(TensorRecord record);
  // The live record with this id, or nullptr (released slots stay findable until retired).
  TensorRecord* find(std::uint64_t id);
  const TensorRecord* find(std::uint64_t id) const;
  TensorRecord& at(std::uint32_t slot) { return records_[slot]; }
  const TensorRecord& at(std::uint32_t slot) const { return records_[slot]; }
  std::uint64_t id_of(std::uint32_t slot) const { return make_id(slot, records_[slot].generation); }
  // The slot that holds `slot`'s bytes: its base for a view, else itself.
  std::uint32_t storage(std::uint32_t slot) const {
    return records_[slot].is_view() ? records_[slot].base : slot;
  }
  // Where `slot`'s bytes are on the device now. REQUIRES: its storage is resident.
  void* device_ptr(std::uint32_t slot) const {
    const TensorRecord& r = records_[slot];
    if (!r.is_view()) return r.device_ptr;
    return static_cast<std::byte*>(records_[r.base].device_ptr) + r.base_offset;
  }
  // Frees the slot for reuse; `remember_name` keeps its name for retired_name(). REQUIRES: its
  // storage has been returned.
  void retire(std::uint32_t slot, bool remember_name);
  // The name of a tensor retired (with remember_name) since the last forget_retired().
  const std::string* retired_name(std::uint64_t id) const;
  void forget_retired() { retired_names_.clear(); }
  std::uint32_t slot_count() const { return static_cast<std::uint32_t>(records_.size()); }

  // The clock: advance() before a call's uses, touch() for each.
  void advance() { ++tick_; }
  std::uint64_t tick() const { return tick_; }
  void touch(std::uint32_t slot) { records_[slot].last_access = tick_; }

 private:
  std::vector<TensorRecord> records_;
  std::vector<std::uint32_t> free_slots_;
  std::unordered_map<std::uint64_t, std::string> retired_names_;
  std::uint64_t tick_ = 0;
};

// The ops of the current iteration, in run order, and per op name (interned) what timing and
// cost estimates need across iterations: the last measured duration and how many runs launched.
// A cleared tape keeps its ops' emptied slot lists for the next iteration's ops, so that a
// steady loop allocates no slot list per op.
class Tape {
 public:
  struct NameStats {
    std::int64_t last_cost_ns = 0;  // last measured duration; 0 = never measured
    std::uint64_t runs = 0;         // launches of this name by run() (for timing samples)
  };

  const std::vector<OpRecord>& ops() const { return ops_; }
  std::size_t size() const { return ops_.size(); }
  bool empty() const { return ops_.empty(); }
  OpRecord& operator[](std::size_t i) { return ops_[i]; }
  const OpRecord& operator[](std::size_t i) const { return ops_[i]; }
  void push_back(OpRecord op) { ops_.push_back(std::move(op)); }
  // Empties the tape, keeping its slot lists for take_slot_list().
  void clear();
  // An empty slot list, recycled from a cleared tape when there is one.
  std::vector<std::uint32_t> take_slot_list();

  // The id of op name `name`, interned on first use.
  std::uint32_t intern(std::string_view name);
  NameStats& name_stats(std::uint32_t name_id) { return names_[name_id]; }

 private:
  // Transparent, so that a name is looked up by string_view without building a string.
  struct NameHash {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard name
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::vector<OpRecord> ops_;
  std::vector<std::vector<std::uint32_t>> spare_slot_lists_;
  std::unordered_map<std::string, std::uint32_t, NameHash, std::equal_to<>> name_ids_;
  std::vector<NameStats> names_;
};

// The time to bring `slot` back by recompute: its producer's cost plus, recursively, the
// recompute cost of the producer's inputs that are dropped too. `memo` (one entry per slot,
// negative = unknown) caches results across calls that see the same tables.
// REQUIRES: the tensor has a producer.
std::int64_t recompute_cost_ns(const TensorTable& tensors, const std::vector<OpRecord>& tape,
                               std::uint32_t slot, std::vector<std::int64_t>& memo);

// Whether `slot`, dropped (now or once evicted), can be rebuilt by replaying producers from the
// tape: it has a producer that is not stale and every input of that producer holds bytes (on
// device or host) or is dropped and recoverable in turn. A released tensor without a producer whose
// storage was given back holds nothing and breaks every chain through it. `memo` (one entry per
// slot: 0 unknown, 1 recoverable, 2 not) caches results across calls that see the same tables.
bool recoverable(const TensorTable& tensors, const std::vector<OpRecord>& tape, std::uint32_t slot,
                 std::vector<std::uint8_t>& memo);
// The same, remembering only positive answers across calls: `proven[s] == epoch` says s was
// found recoverable since the caller last changed `epoch`. A caller keeps it while no tensor
// that a chain may pass through loses its bytes without being recoverable itself, and no
// producer goes stale (then a positive answer stays true); `epoch` is never 0.
bool recoverable(const TensorTable& tensors, const std::vector<OpRecord>& tape, std::uint32_t slot,
                 std::vector<std::uint32_t>& proven, std::uint32_t epoch);

// For every slot, the tape ops that read it (each once per input it is, ascending).
std::vector<std::vector<std::uint32_t>> tape_readers(const TensorTable& tensors,
                                                     const std::vector<OpRecord>& tape);

// For every slot, whether a replay may still read it: the inputs of the producer of each dropped
// tensor that is wanted (live and not released, or such an input itself), through dropped inputs
// recursively. A released tensor that is not marked can give its storage back: no replay that
// can happen reads it.
std::vector<bool> replay_inputs(const TensorTable& tensors, const std::vector<OpRecord>& tape);

// For every slot, whether a replay that may still happen could read it: the inputs of the
// producer of every live tensor that is not released (resident ones too: they may be dropped
// later), through inputs that would be rebuilt (dropped or released, with a producer)
// recursively. A superset of replay_inputs(): what dynamic eviction keeps of released tensors
// that nothing rebuilds.
std::vector<bool> replay_sources(const TensorTable& tensors, const std::vector<OpRecord>& tape);

}  // namespace ebb
