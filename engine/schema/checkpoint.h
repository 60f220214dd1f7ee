// Training checkpoints: the on-disk format (profiles/README.md, "The checkpoint format"), its
// atomic writing and its checked reading. A checkpoint is a directory DIR/step-NNNNNNNN holding
// one file per payload (weights, optimizer moments, whatever bytes the trainer saves) and a
// manifest.json that lists each payload's file, size and CRC32C with the step, the model's
// fingerprint, the precision, the optimizer and the trainer's own state as a JSON object.
//
// A checkpoint appears whole or not at all: it is written into DIR/.tmp-step-N-XXXXXX, every
// file fsynced, the manifest last, and renamed into place; older ones are removed only after
// that. Reading checks the version, the fingerprint, every file's size and, when a payload is
// read, its checksum; a corrupt latest checkpoint is an error, never a silent fall-back to an
// older one (read_checkpoint loads a chosen step when the caller decides to fall back).
//
// The state travels as nlohmann::json, so that the trainer fills structured values (RNG words,
// data position, loss scale) without a second encoding; a target that includes this header
// links nlohmann_json::nlohmann_json itself (ebb_engine links it privately).
//
// Thread safety: the functions are safe to call from any thread; writers into one DIR exclude
// each other with an flock on DIR (the loser gets kFailedPrecondition). A Checkpoint is
// immutable: its read_payload may be called from several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/status.h"

namespace ebb {

// One payload to write: a name the reader asks for it by and the bytes.
// REQUIRES: the bytes stay unchanged until write_checkpoint returns.
struct CheckpointPayload {
  std::string name;                  // non-empty, unique in the checkpoint, any UTF-8 text
  std::span<const std::byte> bytes;  // may be empty
};

// What the caller says about a checkpoint besides its payloads; returned as written.
struct CheckpointMeta {
  std::int64_t step = 0;                            // >= 0; names the directory
  std::string model_fingerprint;                    // non-empty; a resume must name the same one
  std::string precision;                            // e.g. "bf16-mixed"; stored, not interpreted
  std::string optimizer;                            // e.g. "adamw"; stored, not interpreted
  nlohmann::json state = nlohmann::json::object();  // a JSON object; stored, not interpreted
};

// One payload as the manifest lists it.
struct CheckpointPayloadEntry {
  std::string name;          // what read_payload is asked for
  std::string file;          // the file's name inside the checkpoint's directory
  std::size_t bytes = 0;     // the file's exact size
  std::uint32_t crc32c = 0;  // CRC32C (offload/crc32c.h) of the whole file
};

// Where a test may stop a write (CheckpointOptions::fault_hook_for_testing).
enum class CheckpointWritePoint {
  kAfterFirstPayload,  // the first payload's file is written and fsynced (none: not reached)
  kAfterManifest,      // every file and the manifest are fsynced; not yet renamed into place
  kAfterRename,        // renamed into place and DIR fsynced; older checkpoints not yet removed
};

// How write_checkpoint treats the directory around the new checkpoint.
struct CheckpointOptions {
  // Complete checkpoints left in DIR after a write, the new one included (2: the new one and
  // the previous one). >= 1.
  std::size_t keep = 2;
  // Tests only: called at each CheckpointWritePoint, so that a test can SIGKILL the process
  // there (tests/engine/checkpoint_test.cc). A field rather than an environment variable or a
  // global, so that nothing outside the test's own call can trigger it. Production callers
  // leave it null.
  void (*fault_hook_for_testing)(CheckpointWritePoint) = nullptr;
};

// A checkpoint found on disk whose manifest is valid, whose fingerprint is the expected one and
// whose payload files all exist with the listed sizes. Payloads are read on demand.
class Checkpoint {
 public:
  Checkpoint(std::string path, CheckpointMeta meta, std::vector<CheckpointPayloadEntry> payloads)
      : path_(std::move(path)), meta_(std::move(meta)), payloads_(std::move(payloads)) {}

  // DIR/step-NNNNNNNN.
  const std::string& path() const { return path_; }
  const CheckpointMeta& meta() const { return meta_; }
  // In the order they were written.
  const std::vector<CheckpointPayloadEntry>& payloads() const { return payloads_; }

  // The payload's size, to size the buffer for read_payload. kNotFound when the manifest lists
  // no payload of that name.
  Result<std::size_t> payload_bytes(std::string_view name) const;

  // Reads payload `name` into `out`, which must be exactly its size, and checks its CRC32C.
  // kNotFound: no such payload in the manifest, or its file is gone; kInvalidArgument: `out`
  // is of another size; kDataLoss: the file's size or checksum is not the manifest's (then
  // `out` holds whatever was read); kIoError: the OS failed the read. Never writes a file.
  Status read_payload(std::string_view name, std::span<std::byte> out) const;

 private:
  std::string path_;
  CheckpointMeta meta_;
  std::vector<CheckpointPayloadEntry> payloads_;
};

// The directory name of step `step`'s checkpoint: "step-NNNNNNNN" (eight digits at least).
std::string checkpoint_dir_name(std::int64_t step);

// Makes sure checkpoints can be written into `dir`: creates it (not its parents) when missing
// and proves it writable by creating and removing a file in it. The trainer calls it before its
// first step, so that a bad path fails in seconds rather than at the first checkpoint.
// kInvalidArgument: `dir` is empty or names something that is not a directory; kIoError: it
// cannot be created or written (the message names it and the OS's reason); kFailedPrecondition:
// another process is writing a checkpoint into it right now.
Status check_checkpoint_dir(const std::string& dir);

// Writes checkpoint meta.step into `dir` (created when missing, as check_checkpoint_dir does),
// atomically, then removes all but the newest options.keep checkpoints. Leftover .tmp-*
// directories of writes that did not finish are removed first, each named on stderr.
// kInvalidArgument: bad meta, payload names or options; kFailedPrecondition: step-N exists (a
// checkpoint is never overwritten), a checkpoint of a later step exists (the new one would not
// be the latest), or another process is writing into `dir`; kIoError: the OS failed a call,
// and nothing of the new checkpoint is left behind, unless the message says the new
// checkpoint is complete and only removing an older one failed.
Status write_checkpoint(const std::string& dir, const CheckpointMeta& meta,
                        std::span<const CheckpointPayload> payloads,
                        const CheckpointOptions& options = {});

// The steps of the checkpoints in `dir` (its step-N directories), ascending; in-progress
// .tmp-* directories are not checkpoints. Whether each is intact is read_checkpoint's
// question. kNotFound when `dir` does not exist.
Result<std::vector<std::int64_t>> list_checkpoints(const std::string& dir);

// Opens checkpoint `step` in `dir`: the manifest is read and checked, and every payload file's
// existence and size. kNotFound: no such checkpoint, or a file of it is missing;
// kInvalidArgument: the manifest is of another format version or of another model fingerprint
// than `expected_fingerprint`; kDataLoss: the manifest is malformed or a file's size is not the
// listed one. Every message names the file. Never writes.
Result<Checkpoint> read_checkpoint(const std::string& dir, std::int64_t step,
                                   const std::string& expected_fingerprint);

// What a manifest.json says: the meta and the payloads, in the order they were written.
struct CheckpointManifest {
  CheckpointMeta meta;
  std::vector<CheckpointPayloadEntry> payloads;
};

// Parses and checks a manifest's text (read_checkpoint's first step; the fuzz target's whole
// input). `source` names the file in messages. kInvalidArgument: another format or version;
// kDataLoss: not JSON, or a field missing, mistyped or out of range, a payload file name that
// leaves the directory, a name or file listed twice. Touches no file.
Result<CheckpointManifest> parse_checkpoint_manifest(std::string_view text,
                                                     const std::string& source);

// read_checkpoint of the highest step in `dir`. An error in that checkpoint is returned as it
// is, not skipped for an older one. kNotFound when `dir` holds no checkpoint.
Result<Checkpoint> read_latest_checkpoint(const std::string& dir,
                                          const std::string& expected_fingerprint);

}  // namespace ebb
