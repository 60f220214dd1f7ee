// Checkpoints on disk (profiles/README.md, "The checkpoint format"): the directory layout, the
// manifest's JSON, the atomic write and the checked read.

#include "engine/schema/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>

#include "engine/schema/atomic_file.h"
#include "engine/schema/json_fields.h"
#include "offload/crc32c.h"

namespace ebb {
namespace {

using Json = nlohmann::json;

constexpr const char* kFormat = "ebb-checkpoint";
constexpr std::int64_t kVersion = 1;
constexpr const char* kManifestFile = "manifest.json";
constexpr std::string_view kStepPrefix = "step-";
// An entry of DIR named with this prefix is work in progress (a checkpoint being written, an
// old one being removed, check_checkpoint_dir's probe), or what a killed process left of it.
constexpr std::string_view kTemporaryPrefix = ".tmp-";
// One pread at most this long (1 GiB), so that a huge payload is read in bounded calls.
constexpr std::size_t kReadChunkBytes = std::size_t{1} << 30;

// The pieces one after the other, in one allocation (paths and messages).
std::string join(std::initializer_list<std::string_view> pieces) {
  std::size_t size = 0;
  for (std::string_view p : pieces) size += p.size();
  std::string out;
  out.reserve(size);
  for (std::string_view p : pieces) out.append(p);
  return out;
}
template <typename... Pieces>
std::string join(const Pieces&... pieces) {
  return join({std::string_view(pieces)...});
}

// A descriptor closed when it goes out of scope (for those whose close cannot lose data:
// directories and files that were only read).
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// The step of a directory name written by checkpoint_dir_name, or nothing (so that "step-3" and
// "step-00000003" can never both be step 3).
std::optional<std::int64_t> step_of(std::string_view name) {
  if (!name.starts_with(kStepPrefix)) return std::nullopt;
  const std::string_view digits = name.substr(kStepPrefix.size());
  std::int64_t step = 0;
  const auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
  if (err != std::errc() || end != digits.data() + digits.size() || step < 0) return std::nullopt;
  if (checkpoint_dir_name(step) != name) return std::nullopt;
  return step;
}

// The file a payload is stored in: its index (unique) and its name made safe for a file name
// (readable in a listing).
std::string payload_file_name(std::size_t index, const std::string& name) {
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "%03zu-", index);
  std::string file = prefix;
  for (char c : name.substr(0, 64)) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
    file += safe ? c : '_';
  }
  return file + ".bin";
}

// A file name read from a manifest names a file inside the checkpoint's directory and nothing
// else: reading never leaves it.
bool is_plain_file_name(const std::string& file) {
  return !file.empty() && file != "." && file != ".." && file != kManifestFile &&
         file.find('/') == std::string::npos && file.find('\0') == std::string::npos;
}

// The names in `dir` other than "." and "..". kNotFound when `dir` does not exist.
Result<std::vector<std::string>> entry_names(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    const int err = errno;
    if (err == ENOENT) return not_found("checkpoint directory " + dir + " does not exist");
    return os_error("cannot list checkpoint directory " + dir, err);
  }
  std::vector<std::string> names;
  while (const dirent* e = readdir(d)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  closedir(d);
  return names;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Removes `dir` and the files in it. Not recursive: a directory inside was not put there by
// ebb, and is reported rather than removed.
Status remove_directory(const std::string& dir) {
  EBB_ASSIGN_OR_RETURN(std::vector<std::string> names, entry_names(dir));
  for (const std::string& name : names) {
    const std::string path = join(dir, "/", name);
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return os_error("cannot remove " + path, errno);
    }
  }
  if (rmdir(dir.c_str()) != 0) return os_error("cannot remove the directory " + dir, errno);
  return ok_status();
}

Status fsync_directory(int fd, const std::string& dir) {
  if (fsync(fd) != 0) return os_error("cannot fsync the directory " + dir, errno);
  return ok_status();
}

// Creates `dir` when missing (not its parents: a mistyped path fails here rather than growing a
// tree somewhere unexpected).
Status ensure_directory(const std::string& dir) {
  if (dir.empty()) return invalid_argument("checkpoint directory: the path is empty");
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return ok_status();
    return invalid_argument("checkpoint directory " + dir + " is not a directory");
  }
  if (errno != ENOENT) return os_error("cannot reach checkpoint directory " + dir, errno);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    const int err = errno;
    // ENOENT names a missing parent, except where the parent is a file system that makes no new
    // entries (/proc): say which it was.
    const std::size_t slash = dir.find_last_of('/', dir.find_last_not_of('/'));
    const std::string parent =
        slash == std::string::npos ? "." : (slash == 0 ? "/" : dir.substr(0, slash));
    struct stat parent_st {};
    const bool parent_missing = stat(parent.c_str(), &parent_st) != 0;
    return os_error(
        "cannot create checkpoint directory " + dir +
            (err == ENOENT && parent_missing ? " (its parent directory does not exist)" : ""),
        err);
  }
  return ok_status();
}

// Opens `dir` and takes the writers' lock on it: an flock, which the kernel drops when the
// holder dies, so that a killed writer never leaves the directory locked.
Result<ScopedFd> lock_directory(const std::string& dir) {
  ScopedFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return os_error("cannot open checkpoint directory " + dir, errno);
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const std::string message =
          "another writer (this process or another) is writing a checkpoint into ";
      return failed_precondition(message + dir);
    }
    return os_error("cannot lock checkpoint directory " + dir, err);
  }
  return fd;
}

// Removes the .tmp-* entries in `dir`: under the writers' lock, each is what a write that did
// not finish left (a killed process, a full disk), never a write in progress.
Status remove_leftovers(const std::string& dir) {
  EBB_ASSIGN_OR_RETURN(std::vector<std::string> names, entry_names(dir));
  for (const std::string& name : names) {
    if (!name.starts_with(kTemporaryPrefix)) continue;
    const std::string path = join(dir, "/", name);
    if (is_directory(path)) {
      EBB_RETURN_IF_ERROR(remove_directory(path));
    } else if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return os_error("cannot remove " + path, errno);
    }
    std::fprintf(stderr, "ebb: removed %s, left by a checkpoint write that did not finish\n",
                 path.c_str());
  }
  return ok_status();
}

// Writes `bytes` to a new file `name` in the directory `dir_fd` (whose path is `dir`) and
// fsyncs it.
Status write_file(int dir_fd, const std::string& dir, const std::string& name,
                  std::span<const std::byte> bytes) {
  const std::string path = join(dir, "/", name);
  const int fd =
      openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return os_error("cannot create " + path, errno);
  auto fail = [&](const char* what) {
    const int err = errno;
    close(fd);
    return os_error(std::string(what) + " " + path, err);
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0) return fail("cannot fsync");
  if (close(fd) != 0) return os_error("cannot close " + path, errno);
  return ok_status();
}

// The manifest's entries for `payloads`, checksums computed from the caller's memory.
Result<std::vector<CheckpointPayloadEntry>> payload_entries(
    std::span<const CheckpointPayload> payloads, std::int64_t step) {
  std::vector<CheckpointPayloadEntry> entries;
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    const CheckpointPayload& p = payloads[i];
    const std::string where = "checkpoint of step " + std::to_string(step) + ": payload " +
                              std::to_string(i) + " \"" + p.name + "\"";
    if (p.name.empty()) return invalid_argument(where + ": the name is empty");
    for (std::size_t j = 0; j < i; ++j) {
      if (payloads[j].name == p.name) {
        return invalid_argument(where + ": the name is also payload " + std::to_string(j) + "'s");
      }
    }
    entries.push_back({.name = p.name,
                       .file = payload_file_name(i, p.name),
                       .bytes = p.bytes.size(),
                       .crc32c = crc32c(p.bytes.data(), p.bytes.size())});
  }
  return entries;
}

// The manifest's text: one field per line, one payload per line, the state last.
Result<std::string> manifest_text(const CheckpointMeta& meta,
                                  const std::vector<CheckpointPayloadEntry>& entries) {
  // nlohmann throws on a string that is not UTF-8, which JSON cannot hold.
  try {
    std::string out = "{\n";
    out += "\"format\": " + Json(kFormat).dump() + ",\n";
    out += "\"version\": " + std::to_string(kVersion) + ",\n";
    out += "\"step\": " + std::to_string(meta.step) + ",\n";
    out += "\"model_fingerprint\": " + Json(meta.model_fingerprint).dump() + ",\n";
    out += "\"precision\": " + Json(meta.precision).dump() + ",\n";
    out += "\"optimizer\": " + Json(meta.optimizer).dump() + ",\n";
    out += "\"payloads\": [";
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const CheckpointPayloadEntry& e = entries[i];
      out += i ? ",\n  " : "\n  ";
      out += "{\"name\": " + Json(e.name).dump() + ", \"file\": " + Json(e.file).dump() +
             ", \"bytes\": " + std::to_string(e.bytes) +
             ", \"crc32c\": " + std::to_string(e.crc32c) + "}";
    }
    out += entries.empty() ? "],\n" : "\n],\n";
    out += "\"state\": " + meta.state.dump() + "\n}\n";
    return out;
  } catch (const Json::exception& e) {
    return invalid_argument("checkpoint of step " + std::to_string(meta.step) +
                            ": the metadata, the state or a payload name is not valid UTF-8 (" +
                            e.what() + ")");
  }
}

Status check_request(const CheckpointMeta& meta, const CheckpointOptions& options) {
  const std::string where = "checkpoint of step " + std::to_string(meta.step);
  if (meta.step < 0) return invalid_argument(where + ": the step is negative");
  if (meta.model_fingerprint.empty()) return invalid_argument(where + ": no model fingerprint");
  if (!meta.state.is_object()) {
    return invalid_argument(where + ": the state must be a JSON object, found " +
                            std::string(meta.state.type_name()));
  }
  if (options.keep < 1) return invalid_argument(where + ": keep must be at least 1");
  return ok_status();
}

// A new checkpoint must be the latest: never over an existing one, never behind a later one.
Status check_step_is_new(const std::string& dir, std::int64_t step) {
  EBB_ASSIGN_OR_RETURN(std::vector<std::int64_t> steps, list_checkpoints(dir));
  if (std::find(steps.begin(), steps.end(), step) != steps.end()) {
    return failed_precondition("checkpoint " + dir + "/" + checkpoint_dir_name(step) +
                               " already exists; a checkpoint is never overwritten");
  }
  if (!steps.empty() && steps.back() > step) {
    return failed_precondition("checkpoint " + dir + "/" + checkpoint_dir_name(steps.back()) +
                               " is of a later step than " + std::to_string(step) +
                               ": the new checkpoint would not be the latest");
  }
  return ok_status();
}

void reach(const CheckpointOptions& options, CheckpointWritePoint point) {
  if (options.fault_hook_for_testing != nullptr) options.fault_hook_for_testing(point);
}

// Writes every payload and then the manifest into a new DIR/.tmp-step-N-XXXXXX, all fsynced;
// returns its path. On failure nothing of it is left.
Result<std::string> write_temporary(const std::string& dir, const CheckpointMeta& meta,
                                    std::span<const CheckpointPayload> payloads,
                                    const std::vector<CheckpointPayloadEntry>& entries,
                                    const std::string& manifest, const CheckpointOptions& options) {
  std::string tmp =
      dir + "/" + std::string(kTemporaryPrefix) + checkpoint_dir_name(meta.step) + "-XXXXXX";
  if (mkdtemp(tmp.data()) == nullptr) {
    return os_error("checkpoint directory " + dir + " is not writable: cannot create " + tmp,
                    errno);
  }
  auto written = [&]() -> Status {
    ScopedFd fd(open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) return os_error("cannot open " + tmp, errno);
    // mkdtemp makes it 0700; a checkpoint is data to share, as profiles are (atomic_file.cc).
    if (fchmod(fd.get(), 0755) != 0) return os_error("cannot set the mode of " + tmp, errno);
    for (std::size_t i = 0; i < payloads.size(); ++i) {
      EBB_RETURN_IF_ERROR(write_file(fd.get(), tmp, entries[i].file, payloads[i].bytes));
      if (i == 0) reach(options, CheckpointWritePoint::kAfterFirstPayload);
    }
    // Last: a manifest is only ever beside complete, synced payloads.
    EBB_RETURN_IF_ERROR(
        write_file(fd.get(), tmp, kManifestFile, std::as_bytes(std::span(manifest))));
    reach(options, CheckpointWritePoint::kAfterManifest);
    return fsync_directory(fd.get(), tmp);
  }();
  if (!written.ok()) {
    const Status removed = remove_directory(tmp);
    if (!removed.ok()) return io_error(written.message() + "; then " + removed.message());
    return written;
  }
  return tmp;
}

// Removes all but the newest `keep` checkpoints. Each is first renamed to a .tmp- name, so that
// a process killed while removing it leaves a leftover for the next write, not a step-N with
// some files gone.
Status remove_older(const std::string& dir, std::size_t keep, const std::string& written) {
  EBB_ASSIGN_OR_RETURN(std::vector<std::int64_t> steps, list_checkpoints(dir));
  for (std::size_t i = 0; i + keep < steps.size(); ++i) {
    const std::string old = dir + "/" + checkpoint_dir_name(steps[i]);
    const std::string doomed =
        dir + "/" + std::string(kTemporaryPrefix) + "old-" + checkpoint_dir_name(steps[i]);
    Status removed = rename(old.c_str(), doomed.c_str()) == 0
                         ? remove_directory(doomed)
                         : os_error(join("cannot rename ", old, " to ", doomed), errno);
    if (!removed.ok()) {
      return io_error(join("checkpoint ", written,
                           " is complete, but removing the older checkpoint ", old,
                           " failed: ", removed.message()));
    }
  }
  return ok_status();
}

// The manifest's fields after its format and version were found supported. A field that is
// missing or malformed is reported by JsonFieldReader (kInvalidArgument; the caller makes it
// kDataLoss).
Result<CheckpointManifest> manifest_fields(const Json& root, const JsonFieldReader& r) {
  CheckpointManifest m;
  EBB_ASSIGN_OR_RETURN(m.meta.step, r.signed_field(root, "", "step"));
  if (m.meta.step < 0) return r.fail("step", "is negative");
  EBB_ASSIGN_OR_RETURN(m.meta.model_fingerprint, r.string_field(root, "", "model_fingerprint"));
  EBB_ASSIGN_OR_RETURN(m.meta.precision, r.string_field(root, "", "precision"));
  EBB_ASSIGN_OR_RETURN(m.meta.optimizer, r.string_field(root, "", "optimizer"));
  EBB_ASSIGN_OR_RETURN(const Json* state, r.object_field(root, "", "state"));
  m.meta.state = *state;
  EBB_ASSIGN_OR_RETURN(const Json* payloads, r.array_field(root, "", "payloads"));
  for (std::size_t i = 0; i < payloads->size(); ++i) {
    const Json& j = (*payloads)[i];
    const std::string at = "payloads[" + std::to_string(i) + "]";
    if (!j.is_object()) return r.fail(at, "expected an object");
    const std::string p = at + ".";
    CheckpointPayloadEntry e;
    EBB_ASSIGN_OR_RETURN(e.name, r.string_field(j, p, "name"));
    EBB_ASSIGN_OR_RETURN(e.file, r.string_field(j, p, "file"));
    EBB_ASSIGN_OR_RETURN(e.bytes, r.unsigned_field(j, p, "bytes"));
    EBB_ASSIGN_OR_RETURN(std::uint64_t crc, r.unsigned_field(j, p, "crc32c"));
    if (crc > 0xFFFFFFFFu) return r.fail(p + "crc32c", "is not a 32-bit value");
    e.crc32c = static_cast<std::uint32_t>(crc);
    if (e.name.empty()) return r.fail(p + "name", "is empty");
    if (!is_plain_file_name(e.file)) {
      return r.fail(p + "file", "\"" + e.file + "\" is not a file name inside the checkpoint");
    }
    for (const CheckpointPayloadEntry& before : m.payloads) {
      if (before.name == e.name) return r.fail(p + "name", "\"" + e.name + "\" is listed twice");
      if (before.file == e.file) return r.fail(p + "file", "\"" + e.file + "\" is listed twice");
    }
    m.payloads.push_back(std::move(e));
  }
  return m;
}

std::string manifest_path(const std::string& checkpoint) {
  return checkpoint + "/" + kManifestFile;
}

Status payload_not_listed(const std::string& checkpoint, std::string_view name) {
  return not_found(manifest_path(checkpoint) + " lists no payload \"" + std::string(name) + "\"");
}

Status missing_payload_file(const std::string& file, const std::string& name,
                            const std::string& checkpoint) {
  return not_found("checkpoint payload file " + file + " (payload \"" + name + "\" of " +
                   manifest_path(checkpoint) + ") is missing");
}

Status payload_size_differs(const std::string& file, std::size_t on_disk,
                            const CheckpointPayloadEntry& e) {
  return data_loss("checkpoint payload file " + file + " is " + std::to_string(on_disk) +
                   " bytes, its manifest lists " + std::to_string(e.bytes) + " (payload \"" +
                   e.name + "\"): the file was truncated or changed");
}

}  // namespace

Status check_checkpoint_dir(const std::string& dir) {
  EBB_RETURN_IF_ERROR(ensure_directory(dir));
  // Under the lock, so that a writer's clean-up never takes the probe for a leftover.
  EBB_ASSIGN_OR_RETURN(ScopedFd lock, lock_directory(dir));
  std::string probe = dir + "/" + std::string(kTemporaryPrefix) + "check-XXXXXX";
  const int fd = mkstemp(probe.data());
  if (fd < 0) {
    return os_error("checkpoint directory " + dir + " is not writable: cannot create " + probe,
                    errno);
  }
  const bool wrote = write(fd, "x", 1) == 1 && fsync(fd) == 0;
  const int err = errno;
  close(fd);
  unlink(probe.c_str());
  if (!wrote) {
    return os_error("checkpoint directory " + dir + " is not writable: cannot write " + probe, err);
  }
  return ok_status();
}

Status write_checkpoint(const std::string& dir, const CheckpointMeta& meta,
                        std::span<const CheckpointPayload> payloads,
                        const CheckpointOptions& options) {
  EBB_RETURN_IF_ERROR(check_request(meta, options));
  EBB_ASSIGN_OR_RETURN(std::vector<CheckpointPayloadEntry> entries,
                       payload_entries(payloads, meta.step));
  EBB_ASSIGN_OR_RETURN(std::string manifest, manifest_text(meta, entries));
  EBB_RETURN_IF_ERROR(ensure_directory(dir));
  EBB_ASSIGN_OR_RETURN(ScopedFd dir_fd, lock_directory(dir));
  EBB_RETURN_IF_ERROR(remove_leftovers(dir));
  EBB_RETURN_IF_ERROR(check_step_is_new(dir, meta.step));
  EBB_ASSIGN_OR_RETURN(std::string tmp,
                       write_temporary(dir, meta, payloads, entries, manifest, options));
  // rename() replaces only an empty directory, so a complete checkpoint that appeared since the
  // check is never lost.
  const std::string path = dir + "/" + checkpoint_dir_name(meta.step);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const Status failed = os_error("cannot rename " + tmp + " to " + path, errno);
    const Status removed = remove_directory(tmp);
    return removed.ok() ? failed : io_error(failed.message() + "; then " + removed.message());
  }
  EBB_RETURN_IF_ERROR(fsync_directory(dir_fd.get(), dir));
  reach(options, CheckpointWritePoint::kAfterRename);
  return remove_older(dir, options.keep, path);
}

Result<std::vector<std::int64_t>> list_checkpoints(const std::string& dir) {
  EBB_ASSIGN_OR_RETURN(std::vector<std::string> names, entry_names(dir));
  std::vector<std::int64_t> steps;
  for (const std::string& name : names) {
    const std::optional<std::int64_t> step = step_of(name);
    if (step && is_directory(join(dir, "/", name))) steps.push_back(*step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

Result<CheckpointManifest> parse_checkpoint_manifest(std::string_view text,
                                                     const std::string& source) {
  const Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return data_loss(source + ": not a JSON object: the checkpoint manifest is corrupt");
  }
  JsonFieldReader r(source);
  // Format and version first: a manifest of another version may differ in every other field.
  const auto format = root.find("format");
  if (format == root.end() || *format != kFormat) {
    return r.fail("format", "expected \"" + std::string(kFormat) + "\", found " +
                                (format == root.end() ? "none" : format->dump()) +
                                ": not an ebb checkpoint manifest");
  }
  const auto version = root.find("version");
  if (version == root.end() || !version->is_number_integer() ||
      version->get<std::int64_t>() != kVersion) {
    return r.fail("version", "checkpoint format version " +
                                 (version == root.end() ? "(none)" : version->dump()) +
                                 " is not supported (this build reads version " +
                                 std::to_string(kVersion) + ")");
  }
  Result<CheckpointManifest> m = manifest_fields(root, r);
  if (!m.ok()) return data_loss(m.status().message() + ": the checkpoint manifest is corrupt");
  return m;
}

Result<Checkpoint> read_checkpoint(const std::string& dir, std::int64_t step,
                                   const std::string& expected_fingerprint) {
  if (step < 0) return invalid_argument("checkpoint step " + std::to_string(step) + " in " + dir);
  const std::string path = dir + "/" + checkpoint_dir_name(step);
  if (!is_directory(path)) return not_found("checkpoint " + path + " does not exist");
  const std::string source = manifest_path(path);
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(source, "checkpoint manifest"));
  EBB_ASSIGN_OR_RETURN(CheckpointManifest m, parse_checkpoint_manifest(text, source));
  if (m.meta.step != step) {
    return data_loss(source + ": step: " + std::to_string(m.meta.step) +
                     " in the directory of step " + std::to_string(step) +
                     ": the checkpoint manifest is corrupt");
  }
  if (m.meta.model_fingerprint != expected_fingerprint) {
    return invalid_argument(source + ": model_fingerprint: the checkpoint is of model \"" +
                            m.meta.model_fingerprint + "\", this run's is \"" +
                            expected_fingerprint + "\": a resume into another model is refused");
  }
  for (const CheckpointPayloadEntry& e : m.payloads) {
    const std::string file = path + "/" + e.file;
    struct stat st {};
    if (lstat(file.c_str(), &st) != 0) {
      if (errno == ENOENT) return missing_payload_file(file, e.name, path);
      return os_error("cannot stat checkpoint payload file " + file, errno);
    }
    if (!S_ISREG(st.st_mode)) {
      return data_loss("checkpoint payload file " + file + " is not a regular file");
    }
    if (static_cast<std::size_t>(st.st_size) != e.bytes) {
      return payload_size_differs(file, static_cast<std::size_t>(st.st_size), e);
    }
  }
  return Checkpoint(path, std::move(m.meta), std::move(m.payloads));
}

Result<Checkpoint> read_latest_checkpoint(const std::string& dir,
                                          const std::string& expected_fingerprint) {
  EBB_ASSIGN_OR_RETURN(std::vector<std::int64_t> steps, list_checkpoints(dir));
  if (steps.empty()) return not_found("no checkpoint in " + dir);
  return read_checkpoint(dir, steps.back(), expected_fingerprint);
}

Result<std::size_t> Checkpoint::payload_bytes(std::string_view name) const {
  for (const CheckpointPayloadEntry& e : payloads_) {
    if (e.name == name) return e.bytes;
  }
  return payload_not_listed(path_, name);
}

Status Checkpoint::read_payload(std::string_view name, std::span<std::byte> out) const {
  const auto e = std::find_if(payloads_.begin(), payloads_.end(),
                              [&](const CheckpointPayloadEntry& p) { return p.name == name; });
  if (e == payloads_.end()) return payload_not_listed(path_, name);
  const std::string file = path_ + "/" + e->file;
  if (out.size() != e->bytes) {
    return invalid_argument("reading checkpoint payload file " + file + " (payload \"" + e->name +
                            "\", " + std::to_string(e->bytes) + " bytes) into a buffer of " +
                            std::to_string(out.size()) + " bytes");
  }
  ScopedFd fd(open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return missing_payload_file(file, e->name, path_);
    return os_error("cannot open checkpoint payload file " + file, errno);
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0)
    return os_error("cannot stat checkpoint payload file " + file, errno);
  if (static_cast<std::size_t>(st.st_size) != e->bytes) {
    return payload_size_differs(file, static_cast<std::size_t>(st.st_size), *e);
  }
  std::uint32_t crc = 0;
  std::size_t done = 0;
  while (done < out.size()) {
    const std::size_t want = std::min(out.size() - done, kReadChunkBytes);
    const ssize_t n = pread(fd.get(), out.data() + done, want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("cannot read checkpoint payload file " + file, errno);
    if (n == 0) return payload_size_differs(file, done, *e);
    crc = crc32c(out.data() + done, static_cast<std::size_t>(n), crc);
    done += static_cast<std::size_t>(n);
  }
  if (crc != e->crc32c) {
    char text[96];
    std::snprintf(text, sizeof text, "CRC32C 0x%08x, its manifest lists 0x%08x", crc, e->crc32c);
    return data_loss("checkpoint payload file " + file + " (payload \"" + e->name + "\") has " +
                     text + ": the file is corrupt");
  }
  return ok_status();
}

std::string checkpoint_dir_name(std::int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  return name;
}

}  // namespace ebb
