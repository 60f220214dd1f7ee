// Sharded checkpoints (sharded_checkpoint.h): the ranks' votes, the top-level manifest, the
// shard writes and the checked shard reads.

#include "engine/schema/sharded_checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <type_traits>
#include <utility>

#include "engine/schema/atomic_file.h"
#include "engine/schema/json_fields.h"
#include "offload/crc32c.h"

namespace ebb {
namespace {

using Json = nlohmann::json;

constexpr const char* kShardedFormat = "ebb-sharded-checkpoint";
constexpr std::int64_t kShardedVersion = 1;
constexpr const char* kTopManifestFile = "sharded-manifest.json";
// write_checkpoint's name for a checkpoint's manifest (profiles/README.md).
constexpr const char* kShardManifestFile = "manifest.json";
// One read at most this long (4 MiB) when a shard's payload files are checked, so that checking
// needs no buffer of a payload's size.
constexpr std::size_t kCheckChunkBytes = std::size_t{4} << 20;

// One rank's outcome, all-gathered: of a fixed size, so that the gather needs no lengths.
struct Vote {
  std::uint32_t code = 0;             // the rank's StatusCode; kOk when it succeeded
  std::uint32_t manifest_crc32c = 0;  // its shard manifest's CRC32C (writes only)
  std::int64_t step = -1;             // the step it wrote or opened
  char reason[1008] = {};             // its error message, NUL-terminated, truncated
};
static_assert(std::is_trivially_copyable_v<Vote> && sizeof(Vote) == 1024);

Vote vote_of(const Status& status, std::int64_t step, std::uint32_t manifest_crc32c) {
  Vote v;
  v.code = static_cast<std::uint32_t>(status.code());
  v.manifest_crc32c = manifest_crc32c;
  v.step = step;
  const std::string& reason = status.message();
  const std::size_t room = sizeof v.reason - 1;
  if (reason.size() <= room) {
    std::memcpy(v.reason, reason.data(), reason.size());
  } else {
    std::memcpy(v.reason, reason.data(), room - 3);
    std::memcpy(v.reason + room - 3, "...", 3);
  }
  return v;
}

std::string rank_name(int rank) { return "rank " + std::to_string(rank); }

// Every rank's vote. `what` heads the message when the gather itself fails.
Result<std::vector<Vote>> gather_votes(const RankGroup& ranks, const Vote& mine,
                                       const std::string& what) {
  Result<std::vector<std::byte>> all = ranks.all_gather(std::as_bytes(std::span(&mine, 1)));
  if (!all.ok()) {
    return Status(all.status().code(), what + ": " + rank_name(ranks.rank) +
                                           ": the ranks' vote failed: " + all.status().message());
  }
  const auto size = static_cast<std::size_t>(ranks.size);
  if (all->size() != size * sizeof(Vote)) {
    return internal_error(what + ": " + rank_name(ranks.rank) + ": all_gather of " +
                          std::to_string(sizeof(Vote)) + " bytes over " + std::to_string(size) +
                          " ranks returned " + std::to_string(all->size()) + " bytes");
  }
  std::vector<Vote> votes(size);
  std::memcpy(votes.data(), all->data(), all->size());
  return votes;
}

// The outcome every rank returns, the same on each since each sees the same votes: OK, or the
// first failing rank's code and every failing rank's reason, ranks with the same reason named
// together ("ranks 0-2: no sharded checkpoint in ..."), under `what`.
Status agreed_outcome(const std::vector<Vote>& votes, const std::string& what) {
  std::optional<StatusCode> code;
  std::vector<std::pair<std::string, std::vector<int>>> reasons;
  for (std::size_t r = 0; r < votes.size(); ++r) {
    if (votes[r].code == static_cast<std::uint32_t>(StatusCode::kOk)) continue;
    if (!code) {
      code = votes[r].code <= static_cast<std::uint32_t>(StatusCode::kInternal)
                 ? static_cast<StatusCode>(votes[r].code)
                 : StatusCode::kInternal;
    }
    const std::string reason(votes[r].reason, strnlen(votes[r].reason, sizeof votes[r].reason));
    auto same = std::find_if(reasons.begin(), reasons.end(),
                             [&](const auto& entry) { return entry.first == reason; });
    if (same == reasons.end()) same = reasons.insert(reasons.end(), {reason, {}});
    same->second.push_back(static_cast<int>(r));
  }
  if (code) {
    std::string message = what + ": ";
    for (std::size_t i = 0; i < reasons.size(); ++i) {
      const std::vector<int>& who = reasons[i].second;
      message += i ? "; " : "";
      message += who.size() == 1 ? "rank " : "ranks ";
      // Runs of three or more as "first-last", so that a thousand ranks make one short line.
      for (std::size_t j = 0; j < who.size();) {
        std::size_t end = j + 1;
        while (end < who.size() && who[end] == who[end - 1] + 1) ++end;
        message += (j ? ", " : "") + std::to_string(who[j]);
        if (end - j >= 3) {
          message += "-" + std::to_string(who[end - 1]);
        } else if (end - j == 2) {
          message += ", " + std::to_string(who[j + 1]);
        }
        j = end;
      }
      message += ": " + reasons[i].first;
    }
    return Status(*code, message);
  }
  for (std::size_t r = 1; r < votes.size(); ++r) {
    if (votes[r].step != votes[0].step) {
      return failed_precondition(what + ": the ranks disagree on the step: rank 0 is at step " +
                                 std::to_string(votes[0].step) + ", " + rank_name(r) + " at step " +
                                 std::to_string(votes[r].step));
    }
  }
  return ok_status();
}

Status check_ranks(const RankGroup& ranks) {
  if (ranks.size < 1) {
    return invalid_argument("rank group of size " + std::to_string(ranks.size) +
                            ": a group has at least one rank");
  }
  if (ranks.rank < 0 || ranks.rank >= ranks.size) {
    return invalid_argument("rank group: rank " + std::to_string(ranks.rank) + " is not in [0, " +
                            std::to_string(ranks.size) + ")");
  }
  if (!ranks.all_gather) return invalid_argument("rank group: no all_gather");
  return ok_status();
}

std::string rank_dir_name(int rank) { return "rank-" + std::to_string(rank); }

// The fingerprint a shard is written with, so that read_checkpoint refuses another rank's shard.
std::string shard_fingerprint(const std::string& model_fingerprint, int size, int rank) {
  return model_fingerprint + " ranks=" + std::to_string(size) + " rank=" + std::to_string(rank);
}

std::string top_manifest_path(const std::string& dir) { return dir + "/" + kTopManifestFile; }

Result<std::string> top_manifest_text(const ShardedManifest& top) {
  try {  // nlohmann throws on a fingerprint that is not UTF-8
    std::string out = "{\n";
    out += "\"format\": " + Json(kShardedFormat).dump() + ",\n";
    out += "\"version\": " + std::to_string(kShardedVersion) + ",\n";
    out += "\"step\": " + std::to_string(top.step) + ",\n";
    out += "\"ranks\": " + std::to_string(top.ranks) + ",\n";
    out += "\"model_fingerprint\": " + Json(top.model_fingerprint).dump() + ",\n";
    out += "\"shards\": [";
    for (std::size_t r = 0; r < top.shards.size(); ++r) {
      const ShardRecord& s = top.shards[r];
      out += r ? ",\n  " : "\n  ";
      out += "{\"rank\": " + std::to_string(r) + ", \"dir\": " + Json(s.dir).dump() +
             ", \"manifest\": " + Json(s.dir + "/" + kShardManifestFile).dump() +
             ", \"manifest_crc32c\": " + std::to_string(s.manifest_crc32c) + "}";
    }
    out += "\n]\n}\n";
    return out;
  } catch (const Json::exception& e) {
    return invalid_argument("sharded checkpoint of step " + std::to_string(top.step) +
                            ": the model fingerprint is not valid UTF-8 (" + e.what() + ")");
  }
}

Status not_the_name(const JsonFieldReader& r, const std::string& field, const std::string& found,
                    const std::string& expected) {
  return r.fail(field, "\"" + found + "\", expected \"" + expected + "\"");
}

Result<ShardedManifest> top_manifest_fields(const Json& root, const JsonFieldReader& r) {
  ShardedManifest top;
  EBB_ASSIGN_OR_RETURN(top.step, r.signed_field(root, "", "step"));
  if (top.step < 0) return r.fail("step", "is negative");
  EBB_ASSIGN_OR_RETURN(std::int64_t ranks, r.signed_field(root, "", "ranks"));
  if (ranks < 1 || ranks > (std::int64_t{1} << 24)) return r.fail("ranks", "is out of range");
  top.ranks = static_cast<int>(ranks);
  EBB_ASSIGN_OR_RETURN(top.model_fingerprint, r.string_field(root, "", "model_fingerprint"));
  EBB_ASSIGN_OR_RETURN(const Json* shards, r.array_field(root, "", "shards"));
  if (shards->size() != static_cast<std::size_t>(ranks)) {
    return r.fail("shards", std::to_string(shards->size()) + " entries for " +
                                std::to_string(ranks) + " ranks");
  }
  for (std::size_t i = 0; i < shards->size(); ++i) {
    const Json& j = (*shards)[i];
    const std::string at = "shards[" + std::to_string(i) + "]";
    if (!j.is_object()) return r.fail(at, "expected an object");
    const std::string p = at + ".";
    ShardRecord s;
    EBB_ASSIGN_OR_RETURN(std::uint64_t rank, r.unsigned_field(j, p, "rank"));
    EBB_ASSIGN_OR_RETURN(s.dir, r.string_field(j, p, "dir"));
    EBB_ASSIGN_OR_RETURN(std::string manifest, r.string_field(j, p, "manifest"));
    EBB_ASSIGN_OR_RETURN(std::uint64_t crc, r.unsigned_field(j, p, "manifest_crc32c"));
    // Only the names write_sharded_checkpoint gives: reading never leaves DIR.
    const std::string dir =
        rank_dir_name(static_cast<int>(i)) + "/" + checkpoint_dir_name(top.step);
    if (rank != i) return r.fail(p + "rank", "is " + std::to_string(rank));
    if (s.dir != dir) return not_the_name(r, p + "dir", s.dir, dir);
    const std::string expected_manifest = dir + "/" + kShardManifestFile;
    if (manifest != expected_manifest) {
      return not_the_name(r, p + "manifest", manifest, expected_manifest);
    }
    if (crc > 0xFFFFFFFFu) return r.fail(p + "manifest_crc32c", "is not a 32-bit value");
    s.manifest_crc32c = static_cast<std::uint32_t>(crc);
    top.shards.push_back(std::move(s));
  }
  return top;
}

// DIR's rank-R entries, named for a message.
std::string shard_dirs_in(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ignored;
  for (const auto& e : std::filesystem::directory_iterator(dir, ignored)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("rank-") && e.is_directory(ignored)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::string list;
  for (const std::string& name : names) list += (list.empty() ? "" : ", ") + name;
  return list;
}

// sharded-manifest.json, checked; kNotFound when there is none.
Result<ShardedManifest> read_top_manifest(const std::string& dir) {
  const std::string source = top_manifest_path(dir);
  struct stat st {};
  if (stat(source.c_str(), &st) != 0) {
    if (errno != ENOENT) return os_error("cannot stat " + source, errno);
    const std::string shards = shard_dirs_in(dir);
    if (shards.empty()) return not_found("no sharded checkpoint in " + dir + ": no " + source);
    return not_found("no complete sharded checkpoint in " + dir + ": shard directories (" + shards +
                     ") but no " + source + ": a write that was not published");
  }
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(source, "sharded checkpoint manifest"));
  return parse_sharded_manifest(text, source);
}

Result<std::uint32_t> shard_manifest_crc32c(const std::string& step_dir) {
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(step_dir + "/" + kShardManifestFile,
                                                        "checkpoint shard manifest"));
  return crc32c(text.data(), text.size());
}

// Creates DIR when missing (not its parents, as write_checkpoint); ranks may race to it.
Status make_directory(const std::string& dir) {
  if (dir.empty()) return invalid_argument("sharded checkpoint directory: the path is empty");
  if (mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) return ok_status();
  return os_error("cannot create sharded checkpoint directory " + dir, errno);
}

// Renames the shard steps that sharded-manifest.json does not name and that are newer than the
// step it names (left by a write that was not published) to .tmp- names, which write_checkpoint
// removes as leftovers under its lock. Without this a retried step would exist already, and
// keep = 2 would leave the published step behind the unpublished one and the new one.
Status set_aside_unpublished(const std::string& dir, const std::string& shard_dir) {
  std::optional<std::int64_t> published;
  Result<ShardedManifest> top = read_top_manifest(dir);
  if (top.ok()) {
    published = top->step;
  } else if (top.status().code() != StatusCode::kNotFound) {
    return top.status();
  }
  Result<std::vector<std::int64_t>> steps = list_checkpoints(shard_dir);
  if (!steps.ok()) {
    return steps.status().code() == StatusCode::kNotFound ? ok_status() : steps.status();
  }
  for (std::int64_t step : *steps) {
    if (published && step <= *published) continue;
    const std::string path = shard_dir + "/" + checkpoint_dir_name(step);
    // rename() replaces an empty directory: mkdtemp makes a unique one to replace.
    std::string aside = shard_dir + "/.tmp-unpublished-" + checkpoint_dir_name(step) + "-XXXXXX";
    if (mkdtemp(aside.data()) == nullptr) return os_error("cannot create " + aside, errno);
    if (rename(path.c_str(), aside.c_str()) != 0) {
      return os_error("cannot set aside the unpublished shard " + path, errno);
    }
  }
  return ok_status();
}

// Writes this rank's shard; returns its manifest's CRC32C.
Result<std::uint32_t> write_shard(const std::string& dir, const CheckpointMeta& meta,
                                  std::span<const CheckpointPayload> payloads,
                                  const RankGroup& ranks, const CheckpointOptions& options) {
  if (meta.model_fingerprint.empty()) {
    return invalid_argument("sharded checkpoint of step " + std::to_string(meta.step) +
                            ": no model fingerprint");
  }
  if (options.keep < 2) {
    return invalid_argument("sharded checkpoint of step " + std::to_string(meta.step) +
                            ": keep must be at least 2, so that the published step survives "
                            "until the new one is published");
  }
  EBB_RETURN_IF_ERROR(make_directory(dir));
  const std::string shard_dir = dir + "/" + rank_dir_name(ranks.rank);
  EBB_RETURN_IF_ERROR(set_aside_unpublished(dir, shard_dir));
  CheckpointMeta shard_meta = meta;
  shard_meta.model_fingerprint = shard_fingerprint(meta.model_fingerprint, ranks.size, ranks.rank);
  EBB_RETURN_IF_ERROR(write_checkpoint(shard_dir, shard_meta, payloads, options));
  return shard_manifest_crc32c(shard_dir + "/" + checkpoint_dir_name(meta.step));
}

// Rank 0's part: sharded-manifest.json, naming every rank's shard, written atomically.
Status publish(const std::string& dir, const CheckpointMeta& meta, const std::vector<Vote>& votes) {
  ShardedManifest top{.step = meta.step,
                      .ranks = static_cast<int>(votes.size()),
                      .model_fingerprint = meta.model_fingerprint,
                      .shards = {}};
  for (std::size_t r = 0; r < votes.size(); ++r) {
    top.shards.push_back(
        {.dir = rank_dir_name(static_cast<int>(r)) + "/" + checkpoint_dir_name(meta.step),
         .manifest_crc32c = votes[r].manifest_crc32c});
  }
  EBB_ASSIGN_OR_RETURN(std::string text, top_manifest_text(top));
  return write_file_atomically(top_manifest_path(dir), text);
}

// Reads `file` whole in bounded chunks and checks its size and CRC32C against `e`, copying the
// bytes of each of `pieces` out on the way.
Status check_payload_file(const std::string& file, const CheckpointPayloadEntry& e,
                          std::vector<std::byte>& buffer,
                          std::span<const PayloadPiece> pieces = {}) {
  const int fd = open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return not_found("checkpoint shard file " + file + " (payload \"" + e.name +
                       "\") is missing");
    }
    return os_error("cannot open checkpoint shard file " + file, errno);
  }
  std::uint32_t crc = 0;
  std::size_t done = 0;
  while (true) {
    const ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return os_error("cannot read checkpoint shard file " + file, err);
    }
    if (n == 0) break;
    const auto got = static_cast<std::size_t>(n);
    crc = crc32c(buffer.data(), got, crc);
    for (const PayloadPiece& p : pieces) {
      const std::size_t lo = std::max(p.offset, done);
      const std::size_t hi = std::min(p.offset + p.out.size(), done + got);
      if (lo < hi)
        std::memcpy(p.out.data() + (lo - p.offset), buffer.data() + (lo - done), hi - lo);
    }
    done += got;
  }
  close(fd);
  if (done != e.bytes) {
    return data_loss("checkpoint shard file " + file + " is " + std::to_string(done) +
                     " bytes, its manifest lists " + std::to_string(e.bytes) + " (payload \"" +
                     e.name + "\"): the file was truncated or changed");
  }
  if (crc != e.crc32c) {
    char text[96];
    std::snprintf(text, sizeof text, "CRC32C 0x%08x, its manifest lists 0x%08x", crc, e.crc32c);
    return data_loss("checkpoint shard file " + file + " (payload \"" + e.name + "\") has " + text +
                     ": the file is corrupt");
  }
  return ok_status();
}

// Shard `rank` of the published step `top`, its manifest checked against the published one.
Result<Checkpoint> open_published_shard(const std::string& dir, const ShardedManifest& top,
                                        const std::string& model_fingerprint, int rank) {
  const ShardRecord& record = top.shards[static_cast<std::size_t>(rank)];
  EBB_ASSIGN_OR_RETURN(Checkpoint shard,
                       read_checkpoint(dir + "/" + rank_dir_name(rank), top.step,
                                       shard_fingerprint(model_fingerprint, top.ranks, rank)));
  EBB_ASSIGN_OR_RETURN(std::uint32_t crc, shard_manifest_crc32c(shard.path()));
  if (crc != record.manifest_crc32c) {
    char text[96];
    std::snprintf(text, sizeof text, "CRC32C 0x%08x, %s lists 0x%08x", crc, kTopManifestFile,
                  record.manifest_crc32c);
    return data_loss("checkpoint shard manifest " + shard.path() + "/" + kShardManifestFile +
                     " has " + text + ": it is not the published one");
  }
  return shard;
}

// This rank's shard of the published step, every file checked.
Result<Checkpoint> open_shard(const std::string& dir, const std::string& model_fingerprint,
                              const RankGroup& ranks) {
  EBB_ASSIGN_OR_RETURN(ShardedManifest top, read_top_manifest(dir));
  const std::string source = top_manifest_path(dir);
  if (top.model_fingerprint != model_fingerprint) {
    return invalid_argument(source + ": model_fingerprint: the checkpoint is of model \"" +
                            top.model_fingerprint + "\", this run's is \"" + model_fingerprint +
                            "\": a resume into another model is refused");
  }
  if (top.ranks != ranks.size) {
    return invalid_argument(source + ": checkpoint written by " + std::to_string(top.ranks) +
                            " ranks, this run has " + std::to_string(ranks.size) +
                            ": each rank's shard holds its own part of the state");
  }
  EBB_ASSIGN_OR_RETURN(Checkpoint shard,
                       open_published_shard(dir, top, model_fingerprint, ranks.rank));
  std::size_t largest = 0;
  for (const CheckpointPayloadEntry& e : shard.payloads()) largest = std::max(largest, e.bytes);
  std::vector<std::byte> buffer(std::clamp<std::size_t>(largest, 1, kCheckChunkBytes));
  for (const CheckpointPayloadEntry& e : shard.payloads()) {
    EBB_RETURN_IF_ERROR(check_payload_file(shard.path() + "/" + e.file, e, buffer));
  }
  CheckpointMeta meta = shard.meta();
  meta.model_fingerprint = model_fingerprint;
  return Checkpoint(shard.path(), std::move(meta), shard.payloads());
}

}  // namespace

Result<ShardedManifest> parse_sharded_manifest(std::string_view text, const std::string& source) {
  const Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return data_loss(source + ": not a JSON object: the sharded checkpoint manifest is corrupt");
  }
  const auto format = root.find("format");
  const auto version = root.find("version");
  if (format == root.end() || *format != kShardedFormat || version == root.end() ||
      *version != kShardedVersion) {
    return invalid_argument(source + ": not an " + kShardedFormat + " manifest of version " +
                            std::to_string(kShardedVersion) + " (format " +
                            (format == root.end() ? "none" : format->dump()) + ", version " +
                            (version == root.end() ? "none" : version->dump()) + ")");
  }
  JsonFieldReader r(source);
  Result<ShardedManifest> top = top_manifest_fields(root, r);
  if (!top.ok()) {
    return data_loss(top.status().message() + ": the sharded checkpoint manifest is corrupt");
  }
  return top;
}

bool is_sharded_checkpoint_dir(const std::string& dir) {
  struct stat st {};
  return stat(top_manifest_path(dir).c_str(), &st) == 0;
}

Result<ShardedCheckpoint> open_sharded_checkpoint(const std::string& dir,
                                                  const std::string& model_fingerprint) {
  EBB_ASSIGN_OR_RETURN(ShardedManifest top, read_top_manifest(dir));
  if (!model_fingerprint.empty() && top.model_fingerprint != model_fingerprint) {
    return invalid_argument(top_manifest_path(dir) +
                            ": model_fingerprint: the checkpoint is of model \"" +
                            top.model_fingerprint + "\", this run's is \"" + model_fingerprint +
                            "\": a resume into another model is refused");
  }
  ShardedCheckpoint out{.step = top.step, .model_fingerprint = top.model_fingerprint, .shards = {}};
  for (int r = 0; r < top.ranks; ++r) {
    EBB_ASSIGN_OR_RETURN(Checkpoint shard,
                         open_published_shard(dir, top, top.model_fingerprint, r));
    CheckpointMeta meta = shard.meta();
    meta.model_fingerprint = top.model_fingerprint;
    out.shards.emplace_back(shard.path(), std::move(meta), shard.payloads());
  }
  return out;
}

Status read_payload_pieces(const Checkpoint& checkpoint, std::string_view name,
                           std::span<const PayloadPiece> pieces) {
  const auto& entries = checkpoint.payloads();
  const auto e = std::find_if(entries.begin(), entries.end(),
                              [&](const CheckpointPayloadEntry& x) { return x.name == name; });
  if (e == entries.end()) {
    return not_found("checkpoint " + checkpoint.path() + " has no payload \"" + std::string(name) +
                     "\"");
  }
  for (const PayloadPiece& p : pieces) {
    if (p.offset > e->bytes || p.out.size() > e->bytes - p.offset) {
      return invalid_argument("checkpoint " + checkpoint.path() + ": payload \"" + e->name +
                              "\" is " + std::to_string(e->bytes) + " bytes, a read asks for " +
                              std::to_string(p.out.size()) + " from byte " +
                              std::to_string(p.offset));
    }
  }
  std::vector<std::byte> buffer(std::clamp<std::size_t>(e->bytes, 1, kCheckChunkBytes));
  return check_payload_file(checkpoint.path() + "/" + e->file, *e, buffer, pieces);
}

RankGroup single_rank() {
  return {.rank = 0,
          .size = 1,
          .all_gather = [](std::span<const std::byte> send) -> Result<std::vector<std::byte>> {
            return std::vector<std::byte>(send.begin(), send.end());
          }};
}

Status write_sharded_checkpoint(const std::string& dir, const CheckpointMeta& meta,
                                std::span<const CheckpointPayload> payloads, const RankGroup& ranks,
                                const CheckpointOptions& options) {
  EBB_RETURN_IF_ERROR(check_ranks(ranks));
  const std::string what =
      "sharded checkpoint of step " + std::to_string(meta.step) + " in " + dir + " not published";
  Result<std::uint32_t> written = write_shard(dir, meta, payloads, ranks, options);
  const Vote mine = written.ok() ? vote_of(ok_status(), meta.step, *written)
                                 : vote_of(written.status(), meta.step, 0);
  EBB_ASSIGN_OR_RETURN(std::vector<Vote> votes, gather_votes(ranks, mine, what));
  EBB_RETURN_IF_ERROR(agreed_outcome(votes, what));
  const Status published = ranks.rank == 0 ? publish(dir, meta, votes) : ok_status();
  EBB_ASSIGN_OR_RETURN(votes, gather_votes(ranks, vote_of(published, meta.step, 0), what));
  return agreed_outcome(votes, what);
}

Result<Checkpoint> read_latest_sharded_checkpoint(const std::string& dir,
                                                  const std::string& model_fingerprint,
                                                  const RankGroup& ranks) {
  EBB_RETURN_IF_ERROR(check_ranks(ranks));
  const std::string what = "no rank resumes from " + dir;
  Result<Checkpoint> shard = open_shard(dir, model_fingerprint, ranks);
  const Vote mine =
      shard.ok() ? vote_of(ok_status(), shard->meta().step, 0) : vote_of(shard.status(), -1, 0);
  EBB_ASSIGN_OR_RETURN(std::vector<Vote> votes, gather_votes(ranks, mine, what));
  EBB_RETURN_IF_ERROR(agreed_outcome(votes, what));
  return shard;
}

Result<std::vector<std::int64_t>> list_sharded_checkpoints(const std::string& dir) {
  EBB_ASSIGN_OR_RETURN(ShardedManifest top, read_top_manifest(dir));
  std::vector<std::int64_t> common;
  for (int r = 0; r < top.ranks; ++r) {
    Result<std::vector<std::int64_t>> steps = list_checkpoints(dir + "/" + rank_dir_name(r));
    if (!steps.ok() && steps.status().code() != StatusCode::kNotFound) return steps.status();
    std::vector<std::int64_t> mine;
    if (steps.ok()) {
      std::copy_if(steps->begin(), steps->end(), std::back_inserter(mine),
                   [&](std::int64_t s) { return s <= top.step; });
    }
    if (r == 0) {
      common = std::move(mine);
      continue;
    }
    std::vector<std::int64_t> both;
    std::set_intersection(common.begin(), common.end(), mine.begin(), mine.end(),
                          std::back_inserter(both));
    common = std::move(both);
  }
  return common;
}

}  // namespace ebb
