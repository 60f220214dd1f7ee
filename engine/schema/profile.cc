// The Profile's derived figures, its validation, the DTR import and the agreement check. The
// JSON form is in profile_json.cc.
#include "engine/schema/profile.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

namespace ebb {
namespace {

// The most bytes a tensor's shape can describe: its element count times its element size must
// not wrap.
constexpr std::size_t kMaxShapeBytes = std::numeric_limits<std::size_t>::max();

std::string field(std::string_view array, std::size_t i) {
  return std::string(array) + "[" + std::to_string(i) + "]";
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    out += (i ? "," : "") + std::to_string(shape[i]);
  }
  return out + "]";
}

// Validation state: the first error wins; messages are "<source>: <path>: <what>".
class Validator {
 public:
  Validator(const Profile& p, const std::string& source) : p_(p), source_(source) {}

  Status run() {
    if (p_.version != Profile::kSchemaVersion) {
      return fail("version", "profile schema version " + std::to_string(p_.version) +
                                 " is not supported (this build reads version " +
                                 std::to_string(Profile::kSchemaVersion) + ")");
    }
    if (p_.iterations < 1) return fail("iterations", "must be at least 1");
    // References first, so that the checks after them may follow any reference.
    for (std::size_t t = 0; t < p_.tensors.size(); ++t) EBB_RETURN_IF_ERROR(tensor_refs(t));
    for (std::size_t k = 0; k < p_.ops.size(); ++k) EBB_RETURN_IF_ERROR(op_refs(k));
    for (std::size_t t = 0; t < p_.tensors.size(); ++t) EBB_RETURN_IF_ERROR(tensor(t));
    freed_after_.assign(p_.tensors.size(), kNever);
    readers_.assign(p_.tensors.size(), {});
    for (std::size_t k = 0; k < p_.ops.size(); ++k) EBB_RETURN_IF_ERROR(op(k));
    for (std::size_t t = 0; t < p_.tensors.size(); ++t) EBB_RETURN_IF_ERROR(accesses(t));
    if (p_.memory.size() != p_.ops.size()) {
      return fail("memory", "has " + std::to_string(p_.memory.size()) + " points for " +
                                std::to_string(p_.ops.size()) + " ops");
    }
    std::vector<std::size_t> live = recompute_live_bytes(p_);
    for (std::size_t k = 0; k < live.size(); ++k) {
      if (p_.memory[k].live_bytes != live[k]) {
        return fail(field("memory", k) + ".live_bytes",
                    std::to_string(p_.memory[k].live_bytes) +
                        " but the tensors, outputs and frees give " + std::to_string(live[k]));
      }
    }
    return ok_status();
  }

 private:
  static constexpr std::size_t kNever = static_cast<std::size_t>(-1);

  Status fail(const std::string& path, const std::string& what) const {
    return invalid_argument(source_ + ": " + path + ": " + what);
  }

  Status op_ref(const std::string& at, std::size_t k) const {
    if (k >= p_.ops.size()) {
      return fail(at, "op " + std::to_string(k) + " does not exist (" +
                          std::to_string(p_.ops.size()) + " ops)");
    }
    return ok_status();
  }

  Status tensor_ref(const std::string& at, std::size_t t) const {
    if (t >= p_.tensors.size()) {
      return fail(at, "tensor " + std::to_string(t) + " does not exist (" +
                          std::to_string(p_.tensors.size()) + " tensors)");
    }
    return ok_status();
  }

  Status tensor_refs(std::size_t t) const {
    const ProfiledTensor& x = p_.tensors[t];
    std::string at = field("tensors", t);
    if (x.id != t) {
      return fail(at + ".id", "is " + std::to_string(x.id) + ", expected " + std::to_string(t));
    }
    if (x.producer) EBB_RETURN_IF_ERROR(op_ref(at + ".producer", *x.producer));
    for (std::size_t i = 0; i < x.accesses.size(); ++i) {
      EBB_RETURN_IF_ERROR(op_ref(field(at + ".accesses", i), x.accesses[i]));
    }
    return ok_status();
  }

  Status op_refs(std::size_t k) const {
    const ProfiledOp& o = p_.ops[k];
    std::string at = field("ops", k);
    if (o.index != k) {
      return fail(at + ".index",
                  "is " + std::to_string(o.index) + ", expected " + std::to_string(k));
    }
    for (std::size_t i = 0; i < o.inputs.size(); ++i) {
      EBB_RETURN_IF_ERROR(tensor_ref(at + field(".inputs", i), o.inputs[i]));
    }
    for (std::size_t i = 0; i < o.outputs.size(); ++i) {
      EBB_RETURN_IF_ERROR(tensor_ref(at + field(".outputs", i), o.outputs[i]));
    }
    for (std::size_t i = 0; i < o.frees.size(); ++i) {
      EBB_RETURN_IF_ERROR(tensor_ref(at + field(".frees", i), o.frees[i]));
    }
    for (std::size_t i = 0; i < o.writes.size(); ++i) {
      const std::string w = at + field(".writes", i);
      EBB_RETURN_IF_ERROR(tensor_ref(w, o.writes[i]));
      if (std::find(o.inputs.begin(), o.inputs.end(), o.writes[i]) == o.inputs.end()) {
        return fail(w, "tensor " + std::to_string(o.writes[i]) + " is not among the op's inputs");
      }
      if (p_.tensors[o.writes[i]].producer.has_value()) {
        return fail(w, "tensor " + std::to_string(o.writes[i]) +
                           " is produced by an op; only tensors no op produced are written");
      }
    }
    if (!o.writes.empty() && !o.outputs.empty()) {
      return fail(at + ".writes", "an op that writes in place has no outputs");
    }
    return ok_status();
  }

  // The tensor against its producer and its shape. REQUIRES: references checked.
  Status tensor(std::size_t t) const {
    const ProfiledTensor& x = p_.tensors[t];
    std::string at = field("tensors", t);
    if (x.producer) {
      const std::vector<std::size_t>& outs = p_.ops[*x.producer].outputs;
      if (std::find(outs.begin(), outs.end(), t) == outs.end()) {
        return fail(at + ".producer", "op " + std::to_string(*x.producer) +
                                          " does not list tensor " + std::to_string(t) +
                                          " among its outputs");
      }
    }
    if (!x.shape.empty()) {
      std::size_t elements = 1;
      for (std::size_t d = 0; d < x.shape.size(); ++d) {
        if (x.shape[d] < 0) return fail(field(at + ".shape", d), "is negative");
        const auto dim = static_cast<std::size_t>(x.shape[d]);
        // A wrapped product could match `bytes` and pass a shape no tensor has.
        if (dim != 0 && elements > kMaxShapeBytes / dim) {
          return fail(field(at + ".shape", d),
                      "makes the shape " + shape_text(x.shape) + " larger than 2^64 bytes");
        }
        elements *= dim;
      }
      if (elements > kMaxShapeBytes / dtype_bytes(x.dtype)) {
        return fail(at + ".shape", shape_text(x.shape) + " of " + std::string(dtype_name(x.dtype)) +
                                       " is larger than 2^64 bytes");
      }
      if (elements * dtype_bytes(x.dtype) != x.bytes) {
        return fail(at + ".bytes", std::to_string(x.bytes) + " but shape " + shape_text(x.shape) +
                                       " of " + std::string(dtype_name(x.dtype)) + " is " +
                                       std::to_string(elements * dtype_bytes(x.dtype)) + " bytes");
      }
    }
    return ok_status();
  }

  // The op in program order: what it reads exists and is not freed yet, what it writes names
  // it as producer, what it frees is freed once and not before it exists. Records readers.
  Status op(std::size_t k) {
    const ProfiledOp& o = p_.ops[k];
    std::string at = field("ops", k);
    if (o.duration_ns < 0) return fail(at + ".duration_ns", "is negative");
    for (std::size_t i = 0; i < o.inputs.size(); ++i) {
      std::size_t t = o.inputs[i];
      std::string in = field(at + ".inputs", i);
      const ProfiledTensor& x = p_.tensors[t];
      if (x.producer && *x.producer >= k) {
        return fail(in, "reads tensor " + std::to_string(t) + " (" + x.name +
                            ") before its producer, op " + std::to_string(*x.producer));
      }
      if (freed_after_[t] != kNever) {
        return fail(in, "reads tensor " + std::to_string(t) + " (" + x.name + "), freed after op " +
                            std::to_string(freed_after_[t]));
      }
      if (readers_[t].empty() || readers_[t].back() != k) readers_[t].push_back(k);
    }
    for (std::size_t i = 0; i < o.outputs.size(); ++i) {
      std::size_t t = o.outputs[i];
      if (p_.tensors[t].producer != k) {
        return fail(field(at + ".outputs", i), "tensor " + std::to_string(t) + " (" +
                                                   p_.tensors[t].name + ") does not name op " +
                                                   std::to_string(k) + " as its producer");
      }
    }
    for (std::size_t i = 0; i < o.frees.size(); ++i) {
      std::size_t t = o.frees[i];
      std::string fr = field(at + ".frees", i);
      const ProfiledTensor& x = p_.tensors[t];
      if (freed_after_[t] != kNever) {
        return fail(fr, "tensor " + std::to_string(t) + " (" + x.name + ") was freed after op " +
                            std::to_string(freed_after_[t]) + " already");
      }
      if (x.producer && *x.producer > k) {
        return fail(fr, "frees tensor " + std::to_string(t) + " (" + x.name +
                            ") before its producer, op " + std::to_string(*x.producer));
      }
      freed_after_[t] = k;
    }
    return ok_status();
  }

  // Accesses ascending and exactly the ops that read the tensor. REQUIRES: op() ran for all.
  Status accesses(std::size_t t) const {
    const ProfiledTensor& x = p_.tensors[t];
    std::string at = field("tensors", t) + ".accesses";
    for (std::size_t i = 1; i < x.accesses.size(); ++i) {
      if (x.accesses[i] <= x.accesses[i - 1]) {
        return fail(field(at, i), "op " + std::to_string(x.accesses[i]) +
                                      " is not after the access before it, op " +
                                      std::to_string(x.accesses[i - 1]));
      }
    }
    if (x.accesses != readers_[t]) {
      return fail(at, "do not match the ops that list tensor " + std::to_string(t) +
                          " as an input (first reader: " +
                          (readers_[t].empty() ? std::string("none")
                                               : "op " + std::to_string(readers_[t].front())) +
                          ")");
    }
    return ok_status();
  }

  const Profile& p_;
  const std::string& source_;
  std::vector<std::size_t> freed_after_;           // per tensor: the op it was freed after
  std::vector<std::vector<std::size_t>> readers_;  // per tensor: the ops that read it
};

// Builds a Profile from the storage walk of a DTR log.
class DtrImport final : public DtrStorageVisitor {
 public:
  explicit DtrImport(const DtrLog& log) : log_(log) {
    // The op each instruction belongs to: the last CALL or MUTATE at or before it.
    std::size_t ops = 0;
    op_at_.reserve(log.instructions.size());
    for (const DtrInstruction& ins : log.instructions) {
      if (ins.op == DtrOp::kCall || ins.op == DtrOp::kMutate) {
        ProfiledOp op;
        op.index = ops++;
        op.name = ins.name;
        op.duration_ns = ins.time_ns;
        profile_.ops.push_back(std::move(op));
      }
      op_at_.push_back(ops);  // 0: before the first op; k: op k - 1
    }
    profile_.source = "dtr:" + log.path;
  }

  void created(std::size_t instruction, std::size_t storage, std::size_t bytes,
               std::string_view handle) override {
    ProfiledTensor t;
    t.id = storage;
    t.bytes = bytes;
    t.dtype = DType::kU8;
    t.name = std::string(handle);
    if (log_.instructions[instruction].op == DtrOp::kConstant) {
      t.kind = TensorKind::kParameter;
    } else {
      std::size_t k = op_at_[instruction] - 1;
      t.kind = TensorKind::kActivation;
      t.producer = k;
      // A MUTATE rebinds a handle: tell the new storage from the one it replaces.
      if (log_.instructions[instruction].op == DtrOp::kMutate) t.name += "@" + std::to_string(k);
      profile_.ops[k].outputs.push_back(storage);
    }
    profile_.tensors.push_back(std::move(t));
  }

  void read(std::size_t instruction, std::size_t storage) override {
    std::size_t k = op_at_[instruction] - 1;
    profile_.ops[k].inputs.push_back(storage);
    std::vector<std::size_t>& acc = profile_.tensors[storage].accesses;
    if (acc.empty() || acc.back() != k) acc.push_back(k);
  }

  void freed(std::size_t instruction, std::size_t storage) override {
    std::size_t after = op_at_[instruction];
    if (after == 0) {
      if (profile_.ops.empty()) return;  // no op to free it after: live to the end
      after = 1;
    }
    profile_.ops[after - 1].frees.push_back(storage);
  }

  Profile take() && {
    profile_.memory.clear();
    for (std::size_t live : recompute_live_bytes(profile_)) {
      profile_.memory.push_back(MemoryPoint{live, 0});
    }
    return std::move(profile_);
  }

 private:
  const DtrLog& log_;
  std::vector<std::size_t> op_at_;
  Profile profile_;
};

// "tensor 7 (x, 4096 B, f32 [32,32])".
std::string describe(const Profile& p, std::size_t t) {
  const ProfiledTensor& x = p.tensors[t];
  return "tensor " + std::to_string(t) + " (" + x.name + ", " + std::to_string(x.bytes) + " B, " +
         std::string(dtype_name(x.dtype)) + " " + shape_text(x.shape) + ")";
}

// Compares one side (inputs or outputs) of op k in both profiles.
Status agree_tensors(const Profile& a, const Profile& b, std::size_t k, const char* side,
                     const std::vector<std::size_t>& ta, const std::vector<std::size_t>& tb) {
  std::string op = "op " + std::to_string(k) + " (" + a.ops[k].name + ")";
  if (ta.size() != tb.size()) {
    return failed_precondition("profiles differ at " + op + ": " + std::to_string(ta.size()) + " " +
                               side + " vs " + std::to_string(tb.size()));
  }
  for (std::size_t i = 0; i < ta.size(); ++i) {
    const ProfiledTensor& x = a.tensors[ta[i]];
    const ProfiledTensor& y = b.tensors[tb[i]];
    if (x.bytes != y.bytes || x.dtype != y.dtype || x.shape != y.shape) {
      return failed_precondition("profiles differ at " + op + ": " + side + "[" +
                                 std::to_string(i) + "] is " + describe(a, ta[i]) + " vs " +
                                 describe(b, tb[i]));
    }
  }
  return ok_status();
}

}  // namespace

std::optional<std::size_t> ProfiledTensor::last_use() const {
  if (!accesses.empty()) return accesses.back();
  return producer;
}

bool ProfiledTensor::recomputable() const {
  return producer.has_value() && kind != TensorKind::kParameter && kind != TensorKind::kInput &&
         kind != TensorKind::kOptimizerState;
}

ProfileFigures profile_figures(const Profile& profile) {
  ProfileFigures f;
  for (const ProfiledTensor& t : profile.tensors) {
    if (!t.producer) f.initial_bytes += t.bytes;
  }
  f.peak_live_bytes = f.initial_bytes;
  for (const MemoryPoint& m : profile.memory) {
    f.peak_live_bytes = std::max(f.peak_live_bytes, m.live_bytes);
    f.peak_reserved_bytes = std::max(f.peak_reserved_bytes, m.reserved_bytes);
  }
  for (const ProfiledOp& op : profile.ops) f.total_op_time_ns += op.duration_ns;
  return f;
}

std::vector<std::size_t> freed_after_ops(const Profile& profile) {
  std::vector<std::size_t> freed_after(profile.tensors.size(), kNeverFreed);
  for (const ProfiledOp& op : profile.ops) {
    for (std::size_t id : op.frees) {
      if (id < freed_after.size()) freed_after[id] = op.index;
    }
  }
  return freed_after;
}

std::vector<std::size_t> recompute_live_bytes(const Profile& profile) {
  auto bytes_of = [&](std::size_t t) {
    return t < profile.tensors.size() ? profile.tensors[t].bytes : 0;
  };
  std::size_t live = 0;
  for (const ProfiledTensor& t : profile.tensors) {
    if (!t.producer) live += t.bytes;
  }
  std::vector<std::size_t> curve;
  curve.reserve(profile.ops.size());
  for (const ProfiledOp& op : profile.ops) {
    for (std::size_t t : op.outputs) live += bytes_of(t);
    curve.push_back(live);
    for (std::size_t t : op.frees) live -= bytes_of(t);
  }
  return curve;
}

Status validate_profile(const Profile& profile, const std::string& source_name) {
  return Validator(profile, source_name).run();
}

Result<Profile> profile_from_dtr_log(const DtrLog& log) {
  DtrImport import(log);
  EBB_RETURN_IF_ERROR(walk_dtr_storages(log, import));
  Profile profile = std::move(import).take();
  // A broken import is a bug here, not bad input: the walk has already validated the log.
  Status valid = validate_profile(profile, profile.source);
  EBB_CHECK(valid.ok(), valid.message());
  return profile;
}

Status check_profiles_agree(const Profile& a, const Profile& b) {
  std::size_t common = std::min(a.ops.size(), b.ops.size());
  for (std::size_t k = 0; k < common; ++k) {
    if (a.ops[k].name != b.ops[k].name) {
      return failed_precondition("profiles differ at op " + std::to_string(k) + ": " +
                                 a.ops[k].name + " vs " + b.ops[k].name);
    }
    EBB_RETURN_IF_ERROR(agree_tensors(a, b, k, "inputs", a.ops[k].inputs, b.ops[k].inputs));
    EBB_RETURN_IF_ERROR(agree_tensors(a, b, k, "outputs", a.ops[k].outputs, b.ops[k].outputs));
  }
  if (a.ops.size() != b.ops.size()) {
    const Profile& longer = a.ops.size() > b.ops.size() ? a : b;
    return failed_precondition("profiles differ at op " + std::to_string(common) + ": " +
                               std::to_string(a.ops.size()) + " ops vs " +
                               std::to_string(b.ops.size()) +
                               " (first extra op: " + longer.ops[common].name + ")");
  }
  return ok_status();
}

}  // namespace ebb
