// DtrLog: an operator-level log of one PyTorch training iteration in the format of the Dynamic
// Tensor Rematerialization prototype (uwsampl/dtr-prototype, simrd), read into a structured
// form that keeps every instruction, so that the engine can import it as a workload profile
// and the allocator can replay its storage lifetimes.
//
// The format (one JSON object per line, an "INSTRUCTION" field on each; every value a JSON
// string except MUTATE's "MUTATE", an array of integers):
//   CONSTANT {NAME} + one MEMORY line   a tensor that exists before the iteration
//   CALL {NAME, ARGS[], RESULT[], TIME} + per result one MEMORY then one ALIAS line
//   MUTATE {NAME, ARGS[], MUTATE[], TIME}  an in-place operator on ARGS[MUTATE[i]]
//   COPY {DST, SRC}                     a new handle DST to SRC's tensor
//   COPY_FROM {DST, SRC}                handle DST now holds SRC's tensor (DST's old one dropped)
//   RELEASE {NAME}                      the program dropped handle NAME
//   ANNOTATE {ANNOTATION}               START / BACKWARD markers
// MEMORY and ALIAS lines are folded into the instruction they belong to.
//
// Storage semantics (what peak live bytes and the alloc events mean; they reproduce the DTR
// authors' simulator to the byte): a handle names a tensor; a tensor lives in a storage; a CALL
// result with ALIAS -1 gets a fresh storage of its MEMORY bytes, one with ALIAS k shares the
// storage of argument k (a view); a storage is freed when the last handle to any tensor in it
// is released; an in-place MUTATE rebinds each mutated handle to a fresh storage of the old
// storage's size (allocated before the old one's handle is dropped), so the old storage is
// freed at the MUTATE only when that handle was its last.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "allocator/alloc_trace.h"
#include "kernels/status.h"

namespace ebb {

enum class DtrOp : std::uint8_t {
  kConstant,
  kCall,
  kMutate,
  kCopy,
  kCopyFrom,
  kRelease,
  kAnnotate,
};
std::string_view dtr_op_name(DtrOp op);  // "CONSTANT", "CALL", ...

// One result of a CALL: its handle, the MEMORY line's bytes and the ALIAS line's index.
struct DtrResult {
  std::string name;
  std::size_t memory_bytes = 0;  // size of the storage behind the result (MEMORY)
  int alias = -1;                // -1: fresh storage; k >= 0: shares the storage of ARGS[k]
};

// One instruction of the log with its folded MEMORY/ALIAS lines. Which fields are set depends
// on op; the others stay empty.
struct DtrInstruction {
  DtrOp op = DtrOp::kAnnotate;
  std::size_t line = 0;  // 1-based line number of the instruction in its file
  // CONSTANT, RELEASE: the handle. CALL, MUTATE: the operator's name.
  std::string name;
  std::size_t memory_bytes = 0;    // CONSTANT: the MEMORY line's bytes
  std::vector<std::string> args;   // CALL, MUTATE: handles read
  std::vector<DtrResult> results;  // CALL: handles produced, in order
  std::vector<int> mutated;        // MUTATE: indices into args of the handles modified
  std::int64_t time_ns = 0;        // CALL, MUTATE: measured duration
  std::string dst;                 // COPY, COPY_FROM
  std::string src;                 // COPY, COPY_FROM
  std::string annotation;          // ANNOTATE: "START", "BACKWARD", ...
};

// A whole log, in file order. Ownership: owns its instructions.
struct DtrLog {
  std::string path;  // the file it was read from (or the source name given to parse)
  std::vector<DtrInstruction> instructions;
};

// Reads and validates a DTR log. Malformed input is kInvalidArgument naming the file and line:
// bad JSON, an unknown INSTRUCTION, a missing or mistyped field, a number that does not parse,
// a CALL or CONSTANT not followed by its MEMORY (and ALIAS) lines, a MEMORY or ALIAS line that
// belongs to no instruction or names another handle, an alias or mutate index out of range, a
// reference to a handle that is not live, and a name defined twice. A missing file is
// kNotFound.
Result<DtrLog> read_dtr_log(const std::string& path);
// The same from text in memory; source_name stands in for the path in messages.
Result<DtrLog> parse_dtr_log(std::string_view text, const std::string& source_name);

// True when `first_line` is a DTR log line (it has an "INSTRUCTION" field), as opposed to an
// ebb alloc trace.
bool looks_like_dtr_log(std::string_view first_line);

// The check figures of a log (see the storage semantics above).
struct DtrFigures {
  std::size_t peak_live_bytes = 0;    // max over time of the bytes of all live storages
  std::size_t final_live_bytes = 0;   // bytes live after the last instruction (outputs)
  std::int64_t total_op_time_ns = 0;  // sum of TIME over CALL and MUTATE
  std::size_t constant_bytes = 0;     // sum of MEMORY over CONSTANT
  std::size_t storages = 0;           // storages created (constants, fresh results, mutates)
  std::size_t calls = 0;              // CALL instructions
  std::size_t mutates = 0;            // MUTATE instructions
};

// Computes the figures. Fails (naming file and line) only for a log that read_dtr_log would
// have rejected, e.g. one built by hand.
Result<DtrFigures> dtr_figures(const DtrLog& log);

// The log's storage lifetimes as allocator events, on stream 0: an alloc when a storage is
// created (id: creation order; tag: "<operator>:<handle>", "constant:<handle>" for a constant;
// t_ns: the op-time clock, the sum of TIME of the CALLs and MUTATEs so far, that one included)
// and a free when its last handle is released. Views share their storage and allocate nothing.
// Storages of 0 bytes produce no event (an allocator refuses 0-byte requests; they add
// nothing to the peak). Storages still live at the end (the iteration's outputs) get no free.
// The peak of live requested bytes over these events equals dtr_figures().peak_live_bytes.
Result<std::vector<AllocEvent>> dtr_to_alloc_events(const DtrLog& log);

// Receives the storage lifetimes of a log from walk_dtr_storages, in log order, under the
// storage semantics above: what an importer needs to turn a log into tensors and ops without
// re-deriving those semantics. Storages are numbered 0, 1, ... in creation order; each call
// names the instruction that caused it (an index into DtrLog::instructions).
class DtrStorageVisitor {
 public:
  virtual ~DtrStorageVisitor() = default;
  // A CONSTANT, a CALL result with fresh storage (ALIAS -1) or a MUTATE created `storage` of
  // `bytes` bytes, bound to `handle` (for a MUTATE: the mutated handle, rebound to it).
  virtual void created(std::size_t instruction, std::size_t storage, std::size_t bytes,
                       std::string_view handle) = 0;
  // A CALL or MUTATE reads `storage` through one of its arguments (once per argument, in
  // argument order, before the instruction creates anything; a view reads its base storage).
  virtual void read(std::size_t instruction, std::size_t storage) = 0;
  // The last handle to `storage` was dropped (RELEASE, COPY_FROM or MUTATE).
  virtual void freed(std::size_t instruction, std::size_t storage) = 0;
};

// Walks the log's storages, calling `visitor` for each event. Fails (naming file and line) only
// for a log that read_dtr_log would have rejected.
Status walk_dtr_storages(const DtrLog& log, DtrStorageVisitor& visitor);

}  // namespace ebb
