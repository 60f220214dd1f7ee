// Profile: what the profiler records over the warm-up iterations of a training loop (every
// op with its inputs, outputs and measured duration; every tensor with its size, kind,
// producer and accesses; the live/reserved memory curve), and what the scheduler and the
// simulator consume. It is written to and read from a versioned JSON file whose schema is
// documented field by field in profiles/README.md, and it can be imported from a DTR log
// (allocator/dtr_log.h), so that external workloads become profiles.
//
// Indices are dense: tensors[i].id == i and ops[k].index == k. A tensor with no producer
// exists before the iteration (parameters, inputs, optimizer state) and is live from its
// start; every other tensor is live from the op that produces it until the op after which
// it is freed (or to the end of the iteration when no op frees it).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "allocator/dtr_log.h"
#include "engine/schema/tensor_kind.h"
#include "kernels/status.h"

namespace ebb {

// One tensor of the profiled iteration.
struct ProfiledTensor {
  std::size_t id = 0;  // its index in Profile::tensors
  std::string name;
  std::size_t bytes = 0;  // size of its storage
  TensorKind kind = TensorKind::kActivation;
  DType dtype = DType::kF32;
  // Elements per dimension; empty when unknown (a DTR import). When set, the product of the
  // dimensions times dtype_bytes(dtype) is `bytes`.
  std::vector<std::int64_t> shape;
  // The op that writes it; nullopt for a tensor that exists before the iteration.
  std::optional<std::size_t> producer;
  // The ops that read it, ascending, each once; every one comes after the producer.
  std::vector<std::size_t> accesses;

  // The last op that touches it: the last access, else the producer, else nullopt.
  std::optional<std::size_t> last_use() const;
  // Whether dropping it can be undone by replaying its producer: it has one, and it is not a
  // parameter, an input or optimizer state.
  bool recomputable() const;

  friend bool operator==(const ProfiledTensor&, const ProfiledTensor&) = default;
};

// One op of the profiled iteration.
struct ProfiledOp {
  std::size_t index = 0;  // its index in Profile::ops
  std::string name;
  std::vector<std::size_t> inputs;   // tensor ids read, in argument order (may repeat)
  std::vector<std::size_t> outputs;  // tensor ids written; each has this op as producer
  std::int64_t duration_ns = 0;      // measured (device events; a DTR log's TIME)
  std::vector<std::size_t> frees;    // tensor ids freed right after this op
  // An in-place op (Engine::update) has no outputs: the inputs it writes, a subset of `inputs`
  // that no op produced (parameters, gradient buffers, optimizer state). Empty for other ops; in
  // JSON the field is left out then.
  std::vector<std::size_t> writes;

  friend bool operator==(const ProfiledOp&, const ProfiledOp&) = default;
};

// Memory right after one op, before its frees take effect: the op's inputs and outputs are
// both live, which is the moment the peak is reached.
struct MemoryPoint {
  std::size_t live_bytes = 0;      // bytes of all live tensors (see the file comment)
  std::size_t reserved_bytes = 0;  // what the allocator held from the device; 0 when unknown

  friend bool operator==(const MemoryPoint&, const MemoryPoint&) = default;
};

// A profiled iteration. Ownership: owns everything. Build one by hand, with the profiler,
// from JSON or from a DTR log; check a hand-built one with validate_profile.
struct Profile {
  static constexpr int kSchemaVersion = 1;  // the JSON schema this build reads and writes

  int version = kSchemaVersion;
  std::string source;  // where it came from: "engine", "dtr:<log path>"
  std::string device;  // the device it was measured on; empty when unknown
  int iterations = 1;  // warm-up iterations that were profiled and agreed
  std::vector<ProfiledOp> ops;
  std::vector<ProfiledTensor> tensors;
  std::vector<MemoryPoint> memory;  // one per op, memory[k] after ops[k]

  friend bool operator==(const Profile&, const Profile&) = default;
};

// Figures derived from a Profile (computed, never stored in it).
struct ProfileFigures {
  std::size_t peak_live_bytes = 0;      // max of memory[].live_bytes and the initial bytes
  std::int64_t total_op_time_ns = 0;    // sum of ops[].duration_ns
  std::size_t initial_bytes = 0;        // bytes of the tensors that exist before the iteration
  std::size_t peak_reserved_bytes = 0;  // max of memory[].reserved_bytes (0 when unknown)
};
ProfileFigures profile_figures(const Profile& profile);

// The live-bytes curve recomputed from tensors, outputs and frees: the initial bytes, plus
// each op's outputs, less what was freed after the op before it. A valid profile's
// memory[k].live_bytes equals element k.
std::vector<std::size_t> recompute_live_bytes(const Profile& profile);

// Per tensor, the op after which the program frees it (ops[].frees); kNeverFreed when no op
// does. Ids out of range are ignored.
inline constexpr std::size_t kNeverFreed = static_cast<std::size_t>(-1);
std::vector<std::size_t> freed_after_ops(const Profile& profile);

// Checks the internal consistency of a profile: the version; ids and indices dense; every
// reference in range; each producer's outputs hold the tensor and each output names its
// producer; accesses ascending and exactly the ops that read the tensor, all after its
// producer; no tensor read after it was freed, freed twice or freed before its last use;
// shapes consistent with bytes; one memory point per op and live bytes as recomputed.
// kInvalidArgument "<source_name>: <field path>: what is wrong" on the first violation.
Status validate_profile(const Profile& profile, const std::string& source_name);

// JSON (profiles/README.md, "The profile format"). profile_to_json writes one tensor and one op
// per line, so that files diff well. REQUIRES for profile_to_json: validate_profile passes.
std::string profile_to_json(const Profile& profile);
// Parses and validates. An unknown version, a missing or ill-typed field, an out-of-range
// reference and an inconsistency are kInvalidArgument naming source_name and the field path
// ("ops[12].outputs[0]").
Result<Profile> profile_from_json(std::string_view text, const std::string& source_name);

// Writes atomically: a temporary file in the same directory, fsync, rename over `path`. A
// profile that does not validate is refused (kInvalidArgument); an I/O failure is kIoError
// naming the file, and leaves neither the temporary file nor a partial `path` behind.
Status write_profile(const Profile& profile, const std::string& path);
// Reads and validates a profile file; a missing file is kNotFound naming it.
Result<Profile> read_profile(const std::string& path);

// Imports one iteration of a DTR log: one op per CALL and MUTATE (name, TIME as duration),
// one tensor per storage as allocator/dtr_log.h defines them (a view shares its base's
// storage, so an op that reads a view reads that storage; a MUTATE's fresh storage is its
// output and the storage it replaces is one of its inputs). DTR logs do not say which
// constants are weights and which are inputs: every CONSTANT becomes a kParameter with no
// producer, every other storage a kActivation. Logs carry no dtype or shape: dtype is kU8
// and bytes are the MEMORY line's, so that elements == bytes; shape stays empty. A storage
// freed before the first op is counted as freed after op 0; a CONSTANT that appears mid-log
// counts as live from the start (a profile has no producer-less tensor appearing mid-way).
// The peak live bytes, total op time and initial bytes equal dtr_figures()'s peak, op time
// and constant bytes. source is "dtr:<log.path>", iterations 1, reserved bytes 0.
Result<Profile> profile_from_dtr_log(const DtrLog& log);

// Checks that two warm-up iterations recorded the same work: the same number of ops and, op
// by op, the same name and the same inputs and outputs (count, and each tensor's bytes,
// dtype and shape). Durations may differ. kFailedPrecondition naming the first op index that
// differs and how (both names, both sizes, both op counts).
// REQUIRES: both pass validate_profile.
Status check_profiles_agree(const Profile& a, const Profile& b);

}  // namespace ebb
