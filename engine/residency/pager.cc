// The Pager's construction and the ways a tensor comes back to the device: a copy back from the
// host tier or NVMe, a prefetch ahead of its use, or a replay of its producer.
#include "engine/residency/pager.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace ebb {

Pager::Pager(const EngineOptions& options, TensorTable& tensors, Tape& tape, OpLauncher& launcher)
    : options_(options), tensors_(tensors), tape_(tape), launcher_(launcher) {}

Result<std::unique_ptr<Pager>> Pager::create(const EngineOptions& options, TensorTable& tensors,
                                             Tape& tape, OpLauncher& launcher) {
  Device& device = options.device;
  std::unique_ptr<Pager> pager(new Pager(options, tensors, tape, launcher));
  EBB_ASSIGN_OR_RETURN(
      pager->allocator_,
      CachingAllocator::create(device, {.budget_bytes = options.budget_bytes,
                                        .expandable_segments = options.expandable_segments}));
  EBB_ASSIGN_OR_RETURN(pager->host_tier_, HostTier::create(device, options.host_tier_bytes));
  if (!options.nvme_directories.empty()) {
    EBB_ASSIGN_OR_RETURN(pager->nvme_, NvmeTier::create({.directories = options.nvme_directories,
                                                         .capacity_bytes = options.nvme_tier_bytes,
                                                         .block_bytes = options.nvme_block_bytes,
                                                         .queue_depth = options.nvme_queue_depth,
                                                         .device = &device,
                                                         .faults = options.nvme_faults}));
  }
  EBB_ASSIGN_OR_RETURN(pager->transfers_,
                       TransferEngine::create(device, pager->nvme_.get(),
                                              {.copies_in_flight = options.copies_in_flight}));
  Pager* self = pager.get();
  pager->allocator_->set_eviction_callback(
      [self](std::size_t bytes_needed, Stream& /*stream*/) { return self->evict(bytes_needed); });
  return pager;
}

Pager::~Pager() {
  // Queued closures and copies use the tensors' blocks and host copies: let them finish before
  // anything is returned. Errors have nowhere to go now.
  if (transfers_ != nullptr) (void)synchronize_transfers();
  (void)launcher_.stream().synchronize();
  if (allocator_ != nullptr) allocator_->set_eviction_callback(nullptr);
  for (const ArrivalWait& w : arrival_waits_) launcher_.events().release(w.ready);
  for (const ArrivalWait& w : gather_waits_) launcher_.events().release(w.ready);
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    if (tensors_.at(slot).live && allocator_ != nullptr) free_storage(slot);
  }
}

std::string Pager::out_of_memory_message(const std::string& what, std::size_t bytes_needed,
                                         const Status& allocator_status) const {
  // What could not be evicted, largest first: that is what the budget has to hold.
  std::vector<std::uint32_t> held;
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (r.live && r.residency == Residency::kDevice) held.push_back(slot);
  }
  std::stable_sort(held.begin(), held.end(), [this](std::uint32_t a, std::uint32_t b) {
    return tensors_.at(a).bytes > tensors_.at(b).bytes;
  });
  std::string m = what + " needs " + std::to_string(bytes_needed) +
                  " bytes and even evicting everything evictable (policy " +
                  std::string(eviction_policy_name(options_.policy)) +
                  ") leaves no room under the budget of " +
                  std::to_string(allocator_->budget_bytes()) + " bytes; resident and held:";
  constexpr std::size_t kListed = 10;
  for (std::size_t i = 0; i < held.size() && i < kListed; ++i) {
    const TensorRecord& r = tensors_.at(held[i]);
    m += " " + quote(r.name) + " " + std::to_string(r.bytes) + " B (" +
         std::string(tensor_kind_name(r.kind)) +
         (r.lock_count > 0 ? ", locked by the op" : ", pinned") + ")";
    m += i + 1 < held.size() && i + 1 < kListed ? "," : "";
  }
  if (held.size() > kListed) m += " and " + std::to_string(held.size() - kListed) + " more";
  return m + ". Allocator: " + allocator_status.message();
}

void Pager::set_in_iteration(bool in_iteration) {
  chains_changed();  // the tape and the producers are another iteration's
  if (in_iteration_ && !in_iteration) previous_base_ns_ = base_ns_;
  in_iteration_ = in_iteration;
  if (!in_iteration) return;  // the figures of the iteration stay readable until the next one
  iteration_recompute_ns_ = 0;
  base_ns_ = 0;
  base_ops_counted_ = 0;
  residency_log_truncated_ = false;
}

std::size_t Pager::residency_log_limit() const {
  return 8 * (tape_.size() + tensors_.slot_count()) + 4096;
}

void Pager::log_residency(std::uint32_t slot, Residency to) {
  if (residency_log_ == nullptr || !in_iteration_) return;
  if (residency_log_->size() >= residency_log_limit()) {
    residency_log_truncated_ = true;
    return;
  }
  residency_log_->push_back({tensors_.id_of(slot), tape_.size(), to});
}

Status Pager::check_thrash(std::int64_t cost_ns, std::string_view op, std::string_view tensor) {
  if (options_.max_recompute_overhead <= 0 || !in_iteration_) return ok_status();
  // The tape only grows within an iteration: each op's cost is added once.
  for (; base_ops_counted_ < tape_.size(); ++base_ops_counted_) {
    base_ns_ += tape_[base_ops_counted_].cost_ns;
  }
  const std::int64_t base_ns = options_.iteration_compute_ns > 0
                                   ? options_.iteration_compute_ns
                                   : std::max(base_ns_, previous_base_ns_);
  // No base yet (ops without costs): nothing to measure the recompute against.
  if (base_ns <= 0) return ok_status();
  const std::int64_t recompute_ns = iteration_recompute_ns_ + cost_ns;
  const double overhead = static_cast<double>(recompute_ns) / static_cast<double>(base_ns);
  if (overhead <= options_.max_recompute_overhead) return ok_status();
  char figures[160];
  std::snprintf(figures, sizeof figures,
                "would take recompute to %.4fx the base compute (%lld ns of %lld ns), past the "
                "limit of %.3fx",
                overhead, static_cast<long long>(recompute_ns), static_cast<long long>(base_ns),
                options_.max_recompute_overhead);
  return out_of_memory(quote(op) + std::string(kThrashedUnderBudget) +
                       std::to_string(allocator_->budget_bytes()) + " bytes: recomputing " +
                       quote(tensor) + " " + figures);
}

void Pager::arrived(std::uint32_t slot, void* block) {
  TensorRecord& r = tensors_.at(slot);
  r.device_ptr = block;
  r.residency = Residency::kDevice;
  stats_.swapped_in_bytes += static_cast<std::int64_t>(r.bytes);
  log_residency(slot, Residency::kDevice);
}

void Pager::follow_plans(bool plans, EvictionHooks* hooks) {
  plans_ = plans;
  hooks_ = hooks;
  if (!plans) rebuilt_.clear();
}

Status Pager::make_resident(std::uint32_t slot, std::string_view op) {
  const TensorRecord& r = tensors_.at(slot);
  switch (r.residency) {
    case Residency::kDevice:
      return r.arrival_pending ? settle_arrival(slot, /*for_use=*/true) : ok_status();
    case Residency::kHost:
      return copy_back(slot, op);
    case Residency::kDropped:
      if (r.discarded && r.gather != nullptr) {
        EBB_RETURN_IF_ERROR(start_gather(slot, op, /*at_use=*/true));
        return settle_arrival(slot, /*for_use=*/true);
      }
      if (r.discarded) return refill_discarded(slot, op);
      if (!r.has_producer()) {
        return failed_precondition(quote(op) + ": tensor " + quote(r.name) +
                                   " holds no bytes and has no producer to recompute it from");
      }
      return replay(slot, op);
    case Residency::kNvme:
      return read_back_from_nvme(slot, op);
  }
  return internal_error("unknown residency of tensor " + quote(r.name));
}

Status Pager::lock_resident(std::span<const std::uint32_t> slots, std::string_view op) {
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (Status s = make_resident(slots[i], op); !s.ok()) {
      unlock(slots.first(i));
      return s;
    }
    ++tensors_.at(slots[i]).lock_count;
  }
  return ok_status();
}

void Pager::unlock(std::span<const std::uint32_t> slots) {
  for (std::uint32_t slot : slots) --tensors_.at(slot).lock_count;
}

Status Pager::discard(std::uint32_t slot, std::string_view op) {
  const std::uint32_t targets[] = {slot};
  // A gather in flight into it ends first (its block goes back after the gather).
  EBB_RETURN_IF_ERROR(settle_arrival(slot, /*for_use=*/false));
  EBB_RETURN_IF_ERROR(prepare_write(targets, op));
  TensorRecord& r = tensors_.at(slot);
  if (r.lock_count > 0) {
    return failed_precondition(quote(op) + ": tensor " + quote(r.name) +
                               " is in use by a running op");
  }
  free_storage(slot);  // the block goes back after the compute stream's queued work
  tensors_.at(slot).discarded = true;
  log_residency(slot, Residency::kDropped);
  return ok_status();
}

Status Pager::refill_discarded(std::uint32_t slot, std::string_view op) {
  const std::size_t bytes = tensors_.at(slot).bytes;
  EBB_ASSIGN_OR_RETURN(
      void* block, allocate(bytes, tensors_.at(slot).kind, tensors_.at(slot).name, [&] {
        return quote(op) + " (making room for the discarded " + quote(tensors_.at(slot).name) + ")";
      }));
  if (Status s = launcher_.stream().memset_async(block, 0, bytes); !s.ok()) {
    (void)allocator_->free(block);
    return s;
  }
  TensorRecord& r = tensors_.at(slot);
  r.discarded = false;
  r.device_ptr = block;
  r.residency = Residency::kDevice;
  log_residency(slot, Residency::kDevice);
  return ok_status();
}

Status Pager::start_gather(std::uint32_t slot, std::string_view op, bool at_use) {
  {
    const TensorRecord& r = tensors_.at(slot);
    EBB_CHECK(r.gather != nullptr, "start_gather of a tensor that is not gathered");
    if (!(r.residency == Residency::kDropped && r.discarded)) return ok_status();
  }
  const std::shared_ptr<const GatherRecipe> recipe = tensors_.at(slot).gather;
  // The sources first, locked: allocating the block cannot evict them then.
  EBB_RETURN_IF_ERROR(lock_resident(recipe->sources, op));
  const std::size_t bytes = tensors_.at(slot).bytes;
  Result<void*> block = allocate(bytes, tensors_.at(slot).kind, tensors_.at(slot).name, [&] {
    return quote(op) + " (gathering " + quote(tensors_.at(slot).name) + ")";
  });
  if (!block.ok()) {
    unlock(recipe->sources);
    return block.status();
  }
  std::vector<void*> sources;
  sources.reserve(recipe->sources.size());
  for (std::uint32_t s : recipe->sources) sources.push_back(tensors_.at(s).device_ptr);
  // After the compute stream's work so far: the sources' writers and the block's last users.
  Result<std::shared_ptr<Transfer>> gathered = transfers_->collective(
      tensors_.at(slot).name, recipe->make(*block, sources), recipe->cost, &launcher_.stream());
  if (!gathered.ok()) {
    (void)allocator_->free(*block);
    unlock(recipe->sources);
    return gathered.status();
  }
  TensorRecord& r = tensors_.at(slot);
  r.discarded = false;
  r.device_ptr = *block;
  r.residency = Residency::kDevice;
  r.host_copy = std::move(*gathered);
  r.arrival_pending = true;
  r.gather_in_flight = true;
  ++r.lock_count;
  ++stats_.gathers;
  stats_.gathered_bytes += static_cast<std::int64_t>(bytes);
  if (at_use) ++stats_.gathers_at_use;
  log_residency(slot, Residency::kDevice);
  return ok_status();
}

Status Pager::settle_gathers_reading(std::span<const std::uint32_t> slots) {
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (!r.live || !r.gather_in_flight) continue;
    const bool reads = std::any_of(
        r.gather->sources.begin(), r.gather->sources.end(),
        [&](std::uint32_t s) { return std::find(slots.begin(), slots.end(), s) != slots.end(); });
    if (reads) EBB_RETURN_IF_ERROR(settle_arrival(slot, /*for_use=*/false));
  }
  return ok_status();
}

Status Pager::settle_all_gathers() {
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    if (tensors_.at(slot).live && tensors_.at(slot).gather_in_flight) {
      EBB_RETURN_IF_ERROR(settle_arrival(slot, /*for_use=*/false));
    }
  }
  return ok_status();
}

Status Pager::copy_back(std::uint32_t slot, std::string_view op) {
  const std::size_t bytes = tensors_.at(slot).bytes;
  EBB_ASSIGN_OR_RETURN(
      void* block,
      allocate(
          bytes, tensors_.at(slot).kind, tensors_.at(slot).name,
          [&] { return quote(op) + " (swapping in " + quote(tensors_.at(slot).name) + ")"; },
          !tensors_.at(slot).carried));
  TensorRecord& r = tensors_.at(slot);
  Stream& compute = launcher_.stream();
  // After the compute stream's work so far (the block's previous user) and after the swap-out
  // that filled the host copy; the op that reads it waits for it now.
  Result<std::shared_ptr<Transfer>> in = transfers_->copy_to_device(
      block, r.host_ptr, bytes, &compute, TransferDeadline::now(), r.host_copy);
  Status s = in.ok() ? transfers_->stream_wait(compute, **in) : in.status();
  if (!s.ok()) {
    // The copy may be queued on its lane; the block goes back after it.
    if (in.ok()) (void)(*in)->wait();
    (void)allocator_->free(block);
    return s;
  }
  r.host_copy = std::move(*in);
  arrived(slot, block);
  return ok_status();
}

Status Pager::read_back_from_nvme(std::uint32_t slot, std::string_view op) {
  const std::size_t bytes = tensors_.at(slot).bytes;
  EBB_ASSIGN_OR_RETURN(void* block, allocate(
                                        bytes, tensors_.at(slot).kind, tensors_.at(slot).name,
                                        [&] {
                                          return quote(op) + " (bringing " +
                                                 quote(tensors_.at(slot).name) + " back from NVMe)";
                                        },
                                        !tensors_.at(slot).carried));
  TensorRecord& r = tensors_.at(slot);
  Result<std::shared_ptr<Transfer>> fetch = transfers_->nvme_to_device(
      r.nvme_extent, block, bytes, &launcher_.stream(),
      {.op_index = static_cast<std::int64_t>(tape_.size()), .priority = 1});
  Status read = fetch.ok() ? (*fetch)->wait() : fetch.status();
  if (!read.ok()) {
    // Nothing uses the block: the fetch has ended. The extent stays, still the tensor's copy.
    (void)allocator_->free(block);
    return Status(read.code(), quote(op) + ": bringing tensor " + quote(r.name) +
                                   " back from NVMe: " + read.message());
  }
  free_nvme_copy(r);
  stats_.nvme_read_bytes += static_cast<std::int64_t>(bytes);
  arrived(slot, block);
  return ok_status();
}

Status Pager::replay(std::uint32_t slot, std::string_view op) {
  // The tape does not grow while an op's inputs are brought back, so `producer` stays valid.
  const auto producer = static_cast<std::size_t>(tensors_.at(slot).producer);
  if (tape_[producer].stale) {
    // prepare_write rebuilt every wanted tensor before its inputs changed: none should get here.
    return failed_precondition(quote(op) + ": tensor " + quote(tensors_.at(slot).name) +
                               " was dropped and its producer " +
                               quote(tape_[producer].code->name) +
                               " read a tensor written in place since: it cannot be rebuilt");
  }
  EBB_RETURN_IF_ERROR(check_thrash(tape_[producer].cost_ns, op, tensors_.at(slot).name));
  const std::vector<std::uint32_t> inputs = tape_[producer].inputs;
  const std::vector<std::uint32_t> outputs = tape_[producer].outputs;
  std::vector<std::uint32_t> locked;
  std::vector<void*> pointers;
  pointers.reserve(inputs.size() + outputs.size());
  // The resident inputs are locked first, so that bringing the others back cannot evict them.
  for (std::uint32_t in : inputs) {
    if (tensors_.at(in).residency != Residency::kDevice) continue;
    // A prefetched input: the replay reads it only after its copy back.
    if (Status s = settle_arrival(in, /*for_use=*/true); !s.ok()) {
      unlock(locked);
      return s;
    }
    ++tensors_.at(in).lock_count;
    locked.push_back(in);
  }
  for (std::uint32_t in : inputs) {
    if (tensors_.at(in).residency == Residency::kDevice) continue;
    if (Status s = make_resident(in, op); !s.ok()) {
      unlock(locked);
      return s;
    }
    ++tensors_.at(in).lock_count;
    locked.push_back(in);
  }
  const std::vector<std::size_t>& offsets = tape_[producer].input_offsets;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    tensors_.touch(inputs[i]);
    auto* base = static_cast<std::byte*>(tensors_.at(inputs[i]).device_ptr);
    pointers.push_back(offsets.empty() ? base : base + offsets[i]);
  }
  // Every output needs a buffer for the replay. Dropped ones adopt theirs (locked until the
  // launch); the others (resident, on host, released) get scratch freed after the replay.
  std::vector<std::uint32_t> adopted;
  std::vector<void*> scratch;
  for (std::uint32_t out : outputs) {
    const TensorRecord& o = tensors_.at(out);
    const bool adopt = o.residency == Residency::kDropped && (out == slot || !o.released);
    // Described while the replay's inputs are still locked, so the message tells them from the
    // pinned tensors.
    Result<void*> block = allocate(
        o.bytes, o.kind, o.name,
        [&] {
          return quote(op) + " (recomputing " + quote(tensors_.at(slot).name) + " by replaying " +
                 quote(tape_[producer].code->name) + ")";
        },
        /*op_output=*/true);
    if (!block.ok()) {
      for (void* p : scratch) (void)allocator_->free(p);
      for (std::uint32_t a : adopted) {
        TensorRecord& ar = tensors_.at(a);
        (void)allocator_->free(ar.device_ptr);
        ar.device_ptr = nullptr;
        ar.residency = Residency::kDropped;
        --ar.lock_count;
      }
      chains_changed();
      unlock(locked);
      return block.status();
    }
    if (adopt) {
      if (plans_) rebuilt_.push_back(out);
      TensorRecord& a = tensors_.at(out);
      a.device_ptr = *block;
      a.residency = Residency::kDevice;
      tensors_.touch(out);
      ++a.lock_count;
      log_residency(out, Residency::kDevice);
      adopted.push_back(out);
    } else {
      scratch.push_back(*block);
    }
    pointers.push_back(*block);
  }
  Status launched = launcher_.launch(tape_, producer, pointers, /*timed=*/false);
  for (void* p : scratch) (void)allocator_->free(p);  // in stream order, after the replay
  unlock(adopted);
  unlock(locked);
  if (!launched.ok()) return launched;
  ++stats_.recomputed_ops;
  stats_.recompute_ns += tape_[producer].cost_ns;
  iteration_recompute_ns_ += tape_[producer].cost_ns;
  // A released input was brought back only for this replay (or kept for it).
  for (std::uint32_t in : inputs) {
    const TensorRecord& r = tensors_.at(in);
    if (r.released && r.lock_count == 0 && r.residency != Residency::kDropped &&
        storage_releasable(in)) {
      free_storage(in);
    }
  }
  return ok_status();
}

Status Pager::prepare_write(std::span<const std::uint32_t> targets, std::string_view op) {
  std::vector<std::uint8_t> target(tensors_.slot_count(), 0);
  for (std::uint32_t t : targets) target[t] = 1;
  // Whether rebuilding `slot` by replay would read a target: through the inputs of its producer,
  // recursively through dropped inputs. memo: 0 unknown, 1 reads one, 2 does not.
  std::vector<std::uint8_t> memo(tensors_.slot_count(), 0);
  const auto reads_target = [&](auto& self, std::uint32_t slot) -> bool {
    if (memo[slot] != 0) return memo[slot] == 1;
    memo[slot] = 2;  // a cycle cannot occur on a tape, but this keeps the walk finite anyway
    bool reads = false;
    for (std::uint32_t in : tape_[static_cast<std::size_t>(tensors_.at(slot).producer)].inputs) {
      const TensorRecord& r = tensors_.at(in);
      if (target[in] != 0 ||
          (r.residency == Residency::kDropped && r.has_producer() && self(self, in))) {
        reads = true;
        break;
      }
    }
    memo[slot] = reads ? 1 : 2;
    return reads;
  };
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (!r.live || r.released || r.residency != Residency::kDropped || !r.has_producer()) continue;
    if (reads_target(reads_target, slot)) EBB_RETURN_IF_ERROR(make_resident(slot, op));
  }
  bool marked = false;
  for (std::size_t i = 0; i < tape_.size(); ++i) {
    OpRecord& reader = tape_[i];
    for (std::uint32_t in : reader.inputs) {
      if (target[in] != 0) {
        reader.stale = true;
        marked = true;
      }
    }
  }
  if (marked) chains_changed();
  for (std::uint32_t t : targets) {
    TensorRecord& r = tensors_.at(t);
    if (r.residency == Residency::kDevice && r.host_ptr != nullptr) {
      EBB_RETURN_IF_ERROR(settle_arrival(t, /*for_use=*/true));
      free_host_copy(r);
    }
  }
  return ok_status();
}

Status Pager::replace_on_host(std::uint32_t slot, const void* src, std::size_t bytes,
                              std::string_view op) {
  EBB_RETURN_IF_ERROR(settle_arrival(slot, /*for_use=*/false));
  TensorRecord& r = tensors_.at(slot);
  EBB_CHECK(r.lock_count == 0, quote(op) + ": " + quote(r.name) + " is locked");
  if (r.host_ptr == nullptr) {
    Result<void*> host = host_tier_->allocate(r.name, r.bytes);
    if (!host.ok()) {
      reclaim_clean_copies(r.bytes);
      host = host_tier_->allocate(r.name, r.bytes);
    }
    if (!host.ok()) {
      return out_of_memory(quote(op) + ": no room in the host tier for " + quote(r.name) + " (" +
                           std::to_string(r.bytes) + " bytes): " + host.status().message());
    }
    r.host_ptr = *host;
  } else if (r.host_copy != nullptr) {
    // A swap-out may still be filling the buffer, or a copy back reading it.
    EBB_RETURN_IF_ERROR(r.host_copy->wait());
  }
  r.host_copy = nullptr;
  // A sim device's host tier is address space only: it holds no values, as its memory does not.
  if (options_.device.kind() != DeviceKind::kSim) std::memcpy(r.host_ptr, src, bytes);
  if (r.device_ptr != nullptr) {
    // Its last user is on the compute stream.
    Status freed = allocator_->free(r.device_ptr);
    EBB_CHECK(freed.ok(), freed.to_string());
    r.device_ptr = nullptr;
  }
  if (r.nvme_extent != kNoExtent) free_nvme_copy(r);
  // Not an eviction: the program put the bytes there.
  r.residency = Residency::kHost;
  log_residency(slot, Residency::kHost);
  return ok_status();
}

Result<bool> Pager::prefetch(std::uint32_t slot, TransferDeadline deadline, std::uint32_t id) {
  const Residency from = tensors_.at(slot).residency;
  if (from != Residency::kHost && from != Residency::kNvme) return false;
  const std::size_t bytes = tensors_.at(slot).bytes;
  prefetching_ = true;
  Result<void*> block =
      allocator_->allocate(bytes, launcher_.stream(), tensors_.at(slot).name,
                           allocation_category(tensors_.at(slot).kind, !tensors_.at(slot).carried));
  prefetching_ = false;
  if (!block.ok()) {
    // No room yet: the op that reads it brings it back (and reports a failure).
    if (block.status().code() == StatusCode::kOutOfMemory) return false;
    return block.status();
  }
  TensorRecord& r = tensors_.at(slot);
  // After the compute stream's work so far (the block was freed on it and may still be read by
  // queued ops) and after the swap-out that filled the host copy. From NVMe: in the I/O queue
  // by its deadline; the extent is given back once the read is waited for.
  Result<std::shared_ptr<Transfer>> in =
      from == Residency::kNvme
          ? transfers_->nvme_to_device(r.nvme_extent, *block, bytes, &launcher_.stream(), deadline)
          : transfers_->copy_to_device(*block, r.host_ptr, bytes, &launcher_.stream(), deadline,
                                       r.host_copy);
  if (!in.ok()) {
    (void)allocator_->free(*block);
    return in.status();
  }
  r.host_copy = std::move(*in);
  r.arrival_pending = true;
  r.prefetch_id = id;
  arrived(slot, *block);
  return true;
}

Status Pager::settle_arrival(std::uint32_t slot, bool for_use) {
  TensorRecord& r = tensors_.at(slot);
  if (!r.arrival_pending) return ok_status();
  if (r.host_copy->kind() == TransferKind::kNvmeToDevice) return settle_nvme_arrival(slot, for_use);
  r.arrival_pending = false;
  const std::uint32_t id = std::exchange(r.prefetch_id, 0);
  Stream& compute = launcher_.stream();
  if (std::exchange(r.gather_in_flight, false)) {
    // A gather: once the compute stream waits for it, whatever reuses its sources' blocks or
    // the tensor's comes after it, so they are unlocked.
    Event* ready = nullptr;
    if (for_use) {
      Result<Event*> e = launcher_.events().acquire();
      if (e.ok() && compute.record(**e).ok()) {
        ready = *e;
      } else if (e.ok()) {
        launcher_.events().release(*e);
      }
    }
    Status waited = transfers_->stream_wait(compute, *r.host_copy);
    if (ready != nullptr) gather_waits_.push_back({ready, r.host_copy, 0});
    r.host_copy = nullptr;
    unlock(r.gather->sources);
    --r.lock_count;
    if (!waited.ok()) {
      return Status(waited.code(), "gathering " + quote(r.name) + ": " + waited.message());
    }
    return ok_status();
  }
  if (!for_use && r.host_copy->cancel_if_queued()) {
    // Never issued: nothing will write the block, and nothing needs to wait.
    return ok_status();
  }
  if (for_use && id != 0) {
    Result<Event*> ready = launcher_.events().acquire();
    if (ready.ok()) {
      if (Status s = compute.record(**ready); !s.ok()) {
        launcher_.events().release(*ready);
        return s;
      }
      // Issued now if still queued; the measure is taken from when the op asked for it.
      EBB_RETURN_IF_ERROR(transfers_->stream_wait(compute, *r.host_copy));
      arrival_waits_.push_back({*ready, r.host_copy, id});
      return ok_status();
    }
  }
  return transfers_->stream_wait(compute, *r.host_copy);
}

Status Pager::settle_nvme_arrival(std::uint32_t slot, bool for_use) {
  TensorRecord& r = tensors_.at(slot);
  r.arrival_pending = false;
  const std::uint32_t id = std::exchange(r.prefetch_id, 0);
  const std::shared_ptr<Transfer> read = std::exchange(r.host_copy, nullptr);
  if (for_use && id != 0 && !read->done()) late_nvme_prefetches_.push_back(id);
  // Even a tensor about to be freed waits: the I/O thread is writing its block.
  if (Status s = read->wait(); !s.ok()) {
    Status freed = allocator_->free(r.device_ptr);
    EBB_CHECK(freed.ok(), freed.to_string());
    r.device_ptr = nullptr;
    r.residency = Residency::kNvme;
    log_residency(slot, Residency::kNvme);
    return Status(s.code(), "prefetching tensor " + quote(r.name) + " from NVMe: " + s.message());
  }
  free_nvme_copy(r);
  stats_.nvme_read_bytes += static_cast<std::int64_t>(r.bytes);
  return ok_status();
}

std::vector<std::uint32_t> Pager::take_late_prefetches() {
  std::vector<std::uint32_t> late = std::move(late_nvme_prefetches_);
  late_nvme_prefetches_.clear();
  for (ArrivalWait& w : arrival_waits_) {
    Result<double> late_ms = w.copy->completion().elapsed_ms_since(*w.ready);
    if (late_ms.ok() && *late_ms > 0) late.push_back(w.id);
    launcher_.events().release(w.ready);
  }
  arrival_waits_.clear();
  return late;
}

Status Pager::synchronize_transfers() { return transfers_->synchronize(); }

void Pager::account_gather_waits() {
  for (ArrivalWait& w : gather_waits_) {
    Result<double> late_ms = w.copy->completion().elapsed_ms_since(*w.ready);
    if (late_ms.ok() && *late_ms > 0) {
      stats_.exposed_gather_ns += static_cast<std::int64_t>(*late_ms * 1e6);
    }
    launcher_.events().release(w.ready);
  }
  gather_waits_.clear();
}

}  // namespace ebb
