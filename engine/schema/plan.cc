// Plan: names, the profile key, per-op actions and validation against a profile.
#include "engine/schema/plan.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace ebb {
namespace {

// FNV-1a, 64-bit: stable across builds and platforms (std::hash is neither).
class Fnv1a {
 public:
  void add(std::uint64_t value) {
    for (int i = 0; i < 8; ++i) {
      hash_ ^= (value >> (8 * i)) & 0xffU;
      hash_ *= kPrime;
    }
  }
  void add(std::string_view text) {
    add(text.size());
    for (char c : text) {
      hash_ ^= static_cast<unsigned char>(c);
      hash_ *= kPrime;
    }
  }
  void add_list(const std::vector<std::size_t>& values) {
    add(values.size());
    for (std::size_t v : values) add(v);
  }
  std::uint64_t value() const { return hash_; }

 private:
  static constexpr std::uint64_t kPrime = 0x100000001b3ULL;
  std::uint64_t hash_ = 0xcbf29ce484222325ULL;
};

bool reads(const ProfiledTensor& t, std::size_t op) {
  return std::binary_search(t.accesses.begin(), t.accesses.end(), op);
}

}  // namespace

std::string_view eviction_method_name(EvictionMethod method) {
  return method == EvictionMethod::kSwap ? "swap" : "recompute";
}

std::string_view offload_tier_name(OffloadTier tier) {
  return tier == OffloadTier::kHost ? "host" : "nvme";
}

ProfileKey profile_key(const Profile& profile) {
  Fnv1a h;
  h.add(profile.ops.size());
  h.add(profile.tensors.size());
  for (const ProfiledTensor& t : profile.tensors) {
    h.add(t.bytes);
    h.add(static_cast<std::uint64_t>(t.kind));
    h.add(t.producer ? *t.producer + 1 : 0);
  }
  for (const ProfiledOp& op : profile.ops) {
    h.add(op.name);
    h.add_list(op.inputs);
    h.add_list(op.outputs);
    h.add_list(op.frees);
  }
  return ProfileKey{profile.ops.size(), profile.tensors.size(), h.value()};
}

void sort_evictions(std::vector<Eviction>& evictions) {
  std::sort(evictions.begin(), evictions.end(), [](const Eviction& a, const Eviction& b) {
    return std::pair(a.evict_after, a.tensor) < std::pair(b.evict_after, b.tensor);
  });
}

std::vector<OpActions> plan_actions(const Plan& plan, std::size_t ops) {
  std::vector<OpActions> actions(ops);
  for (std::size_t i = 0; i < plan.evictions.size(); ++i) {
    const Eviction& e = plan.evictions[i];
    actions[e.evict_after].evict_after.push_back(i);
    if (e.method == EvictionMethod::kSwap && e.needed_at.has_value()) {
      actions[e.prefetch_at].prefetch_before.push_back(i);
    }
  }
  return actions;
}

Status validate_plan(const Plan& plan, const Profile& profile, const std::string& source_name) {
  auto fail = [&](const std::string& path, const std::string& what) {
    return invalid_argument(source_name + ": " + path + ": " + what);
  };
  if (plan.version != Plan::kSchemaVersion) {
    return fail("version", "plan schema version " + std::to_string(plan.version) +
                               " is not supported (this build reads version " +
                               std::to_string(Plan::kSchemaVersion) + ")");
  }
  const ProfileKey key = profile_key(profile);
  if (plan.profile != key) {
    return fail("profile", "the plan was made for another profile (" +
                               std::to_string(plan.profile.ops) + " ops, " +
                               std::to_string(plan.profile.tensors) + " tensors, fingerprint " +
                               std::to_string(plan.profile.fingerprint) + "), not this one (" +
                               std::to_string(key.ops) + " ops, " + std::to_string(key.tensors) +
                               " tensors, fingerprint " + std::to_string(key.fingerprint) + ")");
  }
  const std::size_t ops = profile.ops.size();
  // The end of the last eviction of each tensor seen so far (evictions are sorted by
  // evict_after, so one tensor's intervals come in order).
  std::vector<std::optional<std::size_t>> busy_until(profile.tensors.size());
  std::vector<bool> seen(profile.tensors.size(), false);
  const std::vector<std::size_t> freed_after = freed_after_ops(profile);
  for (std::size_t i = 0; i < plan.evictions.size(); ++i) {
    const Eviction& e = plan.evictions[i];
    const std::string at = "evictions[" + std::to_string(i) + "].";
    if (i > 0) {
      const Eviction& prev = plan.evictions[i - 1];
      if (std::pair(prev.evict_after, prev.tensor) > std::pair(e.evict_after, e.tensor)) {
        return fail(at + "evict_after", "evictions are not sorted by (evict_after, tensor)");
      }
    }
    if (e.tensor >= profile.tensors.size()) {
      return fail(at + "tensor", "tensor " + std::to_string(e.tensor) + " is out of range (" +
                                     std::to_string(profile.tensors.size()) + " tensors)");
    }
    const ProfiledTensor& t = profile.tensors[e.tensor];
    const std::string tensor_text = "tensor " + std::to_string(t.id) + " \"" + t.name + "\"";
    if (e.evict_after >= ops) {
      return fail(at + "evict_after", "op " + std::to_string(e.evict_after) + " is out of range (" +
                                          std::to_string(ops) + " ops)");
    }
    if (e.needed_at.has_value() && *e.needed_at >= ops) {
      return fail(at + "needed_at", "op " + std::to_string(*e.needed_at) + " is out of range (" +
                                        std::to_string(ops) + " ops)");
    }
    if (t.producer.has_value() && e.evict_after < *t.producer) {
      return fail(at + "evict_after", "op " + std::to_string(e.evict_after) + " comes before " +
                                          tensor_text + " is produced (by op " +
                                          std::to_string(*t.producer) + ")");
    }
    const std::optional<std::size_t> last = t.last_use();
    // Bytes a program frees after op f are gone for ops > f; without a free, at the end.
    const std::size_t end = freed_after[t.id];
    if (e.evict_after > end) {
      return fail(at + "evict_after", "op " + std::to_string(e.evict_after) + " comes after " +
                                          tensor_text + " is freed (after op " +
                                          std::to_string(end) + ")");
    }
    if (e.needed_at.has_value()) {
      const std::size_t n = *e.needed_at;
      if (n <= e.evict_after) {
        return fail(at + "needed_at", "op " + std::to_string(n) + " is not after evict_after " +
                                          std::to_string(e.evict_after));
      }
      if (!reads(t, n)) {
        return fail(at + "needed_at", "op " + std::to_string(n) + " does not read " + tensor_text);
      }
      auto next = std::upper_bound(t.accesses.begin(), t.accesses.end(), e.evict_after);
      if (next != t.accesses.end() && *next < n) {
        return fail(at + "needed_at", "op " + std::to_string(*next) + " reads " + tensor_text +
                                          " inside the interval (" + std::to_string(e.evict_after) +
                                          ", " + std::to_string(n) + ")");
      }
    } else if (last.has_value() && *last > e.evict_after) {
      return fail(at + "needed_at", "null, but op " + std::to_string(*last) + " reads " +
                                        tensor_text + " after op " + std::to_string(e.evict_after));
    }
    if (e.method == EvictionMethod::kRecompute) {
      if (!t.recomputable()) {
        return fail(at + "method",
                    "recompute of " + tensor_text + ", a " + std::string(tensor_kind_name(t.kind)) +
                        (t.producer ? "" : " with no producer") + ", which cannot be recomputed");
      }
    } else {
      if (e.tier == OffloadTier::kHost && !plan.hardware.has_host_link()) {
        return fail(at + "method",
                    "swap to host, but hardware \"" + plan.hardware.name + "\" has no host link");
      }
      if (e.tier == OffloadTier::kNvme &&
          (plan.hardware.nvme_read_bytes_per_s <= 0 || plan.hardware.nvme_write_bytes_per_s <= 0)) {
        return fail(at + "tier",
                    "swap to nvme, but hardware \"" + plan.hardware.name + "\" has no NVMe tier");
      }
    }
    if (e.needed_at.has_value()) {
      if (e.prefetch_at <= e.evict_after || e.prefetch_at > *e.needed_at) {
        return fail(at + "prefetch_at", "op " + std::to_string(e.prefetch_at) +
                                            " is not in (evict_after " +
                                            std::to_string(e.evict_after) + ", needed_at " +
                                            std::to_string(*e.needed_at) + "]");
      }
    }
    if (seen[e.tensor]) {
      if (!busy_until[e.tensor].has_value() || e.evict_after < *busy_until[e.tensor]) {
        return fail(at + "evict_after", "overlaps an earlier eviction of " + tensor_text);
      }
    }
    seen[e.tensor] = true;
    busy_until[e.tensor] = e.needed_at;
  }
  for (std::size_t i = 0; i < plan.holds.size(); ++i) {
    const Hold& h = plan.holds[i];
    const std::string at = "holds[" + std::to_string(i) + "].";
    if (h.tensor >= profile.tensors.size()) {
      return fail(at + "tensor", "tensor " + std::to_string(h.tensor) + " is out of range (" +
                                     std::to_string(profile.tensors.size()) + " tensors)");
    }
    if (i > 0 && plan.holds[i - 1].tensor >= h.tensor) {
      return fail(at + "tensor", "holds are not sorted by tensor, one per tensor");
    }
    const ProfiledTensor& t = profile.tensors[h.tensor];
    const std::string tensor_text = "tensor " + std::to_string(t.id) + " \"" + t.name + "\"";
    if (t.producer.has_value()) {
      return fail(at + "tensor", tensor_text + " has a producer: a replay rebuilds it");
    }
    const std::size_t freed = freed_after[t.id];
    if (freed == kNeverFreed || h.until <= freed || h.until >= ops) {
      return fail(at + "until", "op " + std::to_string(h.until) + " is not between the free of " +
                                    tensor_text + " (after op " + std::to_string(freed) +
                                    ") and the last op " + std::to_string(ops - 1));
    }
    if (seen[t.id] && !busy_until[t.id].has_value()) {
      return fail(at + "tensor", tensor_text + " is evicted over its free, yet held");
    }
  }
  return ok_status();
}

}  // namespace ebb
