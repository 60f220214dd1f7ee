// The Optimizer's slices off the device (see optimizer.h): their buffers on the host tier or in
// an NVMe chunk store, the gradient copies to the host, the CPU step and the way the updated
// working parameters go back, the delayed update's worker, and checkpoints of every slice.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "engine/nn_ops.h"
#include "engine/optim/optimizer.h"
#include "kernels/optim.h"
#include "kernels/sim/sim_device.h"
#include "offload/chunk_store.h"

namespace ebb {
namespace {

constexpr LaunchContext kHostContext{.kind = DeviceKind::kCpu, .native_stream = nullptr};

Status simulated_values_refused(const char* what) {
  return failed_precondition(std::string(what) +
                             " of optimizer state off a sim device: the sim's host tier and NVMe "
                             "hold no values");
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

// A slice off the device. On a sim device its buffers are address space only and hold no values
// (an NVMe slice then has no chunks: its state is only counted). Host: master, a and b in host tier
// buffers. NVMe: the three as the parts of its chunks [first_chunk, first_chunk + chunks.size()) of
// the optimizer's one chunk store, which streams every NVMe slice in one pass, so that one slice's
// chunks are read while another's are updated. Both: two gradient staging buffers (one with no
// delayed update) and one for the updated working parameters, on the host tier.
struct Optimizer::OffSlice {
  HostTier* tier = nullptr;
  float* master = nullptr;
  float* a = nullptr;
  float* b = nullptr;
  bool on_nvme = false;
  std::vector<Chunk> chunks;
  std::size_t first_chunk = 0;  // in the optimizer's chunk store
  void* grads[2] = {nullptr, nullptr};
  void* params = nullptr;
  // When this slice's gradient copy started: ModelState::step_serial() and accumulations().
  std::int64_t copied_step = -1;
  int copied_at = -1;

  ~OffSlice() {
    for (void* p : {static_cast<void*>(master), static_cast<void*>(a), static_cast<void*>(b),
                    grads[0], grads[1], params}) {
      if (p != nullptr) (void)tier->free(p);
    }
  }
};

bool Optimizer::simulated() const { return engine_.device().kind() == DeviceKind::kSim; }

bool Optimizer::has_off_device() const {
  return std::any_of(
      model_.slices().begin(), model_.slices().end(),
      [](const ModelState::Slice& s) { return s.placement != StatePlacement::kDevice; });
}

Status Optimizer::create_off_device() {
  off_.resize(slices_.size());
  if (!has_off_device()) return ok_status();
  HostTier& tier = engine_.host_tier();
  NvmeTier* nvme = engine_.nvme_tier();
  const std::size_t pbytes = dtype_bytes(model_.param_dtype());
  const std::size_t gbytes = dtype_bytes(model_.grad_dtype());
  const int grad_buffers = offload_.delayed_update ? 2 : 1;
  const bool sim = simulated();
  // What the host tier must hold, checked up front so that the error can say it all.
  std::size_t host_state = 0;
  std::size_t staging = 0;
  std::size_t nvme_state = 0;
  std::size_t chunk_bytes = offload_.nvme_chunk_bytes;
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    const ModelState::Slice& ms = model_.slices()[k];
    if (ms.placement == StatePlacement::kDevice) continue;
    const auto n = static_cast<std::size_t>(ms.numel);
    const std::size_t state =
        (n + static_cast<std::size_t>(slices_[k].a_floats + slices_[k].b_floats)) * sizeof(float);
    staging += n * (gbytes * static_cast<std::size_t>(grad_buffers) + pbytes);
    if (ms.placement == StatePlacement::kHost) {
      host_state += state;
    } else {
      if (nvme == nullptr && !sim) {
        return failed_precondition(
            "optimizer state of slice " + slice_base(k) +
            " is placed on NVMe, but the engine has no NVMe tier: give --nvme-dir (a directory on "
            "an NVMe drive) or place the state on the device or the host");
      }
      nvme_state += state;
    }
  }
  if (nvme_state > 0 && !sim) {
    if (chunk_bytes == 0) chunk_bytes = stream_chunk_bytes(*nvme);
    // The chunk store's staging: three chunks (read ahead, update, write behind).
    staging += 3 * (chunk_bytes + 3 * 4096);
  }
  const std::size_t needed = host_state + staging;
  if (needed > tier.free_bytes()) {
    return out_of_memory(
        "the host tier cannot hold the optimizer state placed off the device: it needs " +
        std::to_string(needed) + " bytes (" + std::to_string(host_state) +
        " of master weights and optimizer state on the host, " + std::to_string(staging) +
        " of gradient, parameter and chunk staging) and has " + std::to_string(tier.free_bytes()) +
        " free; raise --host-tier (EngineOptions::host_tier_bytes) by at least " +
        std::to_string(((needed - tier.free_bytes()) >> 20) + 1) +
        "MiB, or place more state on the device or NVMe");
  }
  // The NVMe slices' chunks, all in one store: shapes and initial master weights, in order.
  std::vector<ChunkShape> nvme_shapes;
  std::vector<std::vector<float>> nvme_initial;
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    const ModelState::Slice& ms = model_.slices()[k];
    if (ms.placement == StatePlacement::kDevice) continue;
    const SliceState& ss = slices_[k];
    auto off = std::make_unique<OffSlice>();
    off->tier = &tier;
    const std::string base = slice_base(k);
    const auto n = static_cast<std::size_t>(ms.numel);
    const auto host = [&](const std::string& what, std::size_t bytes) -> Result<void*> {
      std::string name = base;
      name += '.';
      name += what;
      EBB_ASSIGN_OR_RETURN(void* p, tier.allocate(name, std::max<std::size_t>(bytes, 1)));
      if (!sim) std::memset(p, 0, bytes);
      return p;
    };
    for (int i = 0; i < grad_buffers; ++i) {
      EBB_ASSIGN_OR_RETURN(off->grads[i], host("grad_staging", n * gbytes));
    }
    EBB_ASSIGN_OR_RETURN(off->params, host("param_staging", n * pbytes));
    std::vector<float> initial = model_.take_initial_master(k);
    if (ms.placement == StatePlacement::kHost) {
      EBB_ASSIGN_OR_RETURN(void* master, host("master", n * sizeof(float)));
      off->master = static_cast<float*>(master);
      if (!sim) std::memcpy(off->master, initial.data(), n * sizeof(float));
      EBB_ASSIGN_OR_RETURN(void* a, host("a", static_cast<std::size_t>(ss.a_floats) * 4));
      off->a = static_cast<float*>(a);
      if (ss.b_floats > 0) {
        EBB_ASSIGN_OR_RETURN(void* b, host("b", static_cast<std::size_t>(ss.b_floats) * 4));
        off->b = static_cast<float*>(b);
      }
      offload_stats_.host_bytes += (n + static_cast<std::size_t>(ss.a_floats + ss.b_floats)) * 4;
    } else if (sim) {
      off->on_nvme = true;
      offload_stats_.nvme_bytes += (n + static_cast<std::size_t>(ss.a_floats + ss.b_floats)) * 4;
    } else {
      // Chunks of whole parameters (AdamW: of elements), each at most chunk_bytes of state.
      const std::int64_t per_element = ss.b_floats > 0 ? 8 : 4;  // master, [b]
      if (config_.kind == OptimizerKind::kAdamW) {
        const std::int64_t step =
            std::max<std::int64_t>(1, static_cast<std::int64_t>(chunk_bytes) / (per_element + 4));
        for (std::int64_t e0 = 0; e0 < ms.numel; e0 += step) {
          const std::int64_t e1 = std::min(ms.numel, e0 + step);
          off->chunks.push_back({.e0 = e0, .e1 = e1, .s0 = e0, .s1 = e1, .where = {}});
        }
      } else {
        std::int64_t bytes = 0;
        for (std::size_t p = 0; p < ss.where.size(); ++p) {
          const ParamState& w = ss.where[p];
          if (off->chunks.empty() || bytes >= static_cast<std::int64_t>(chunk_bytes)) {
            if (!off->chunks.empty()) {
              off->chunks.back().e1 = w.first;
              off->chunks.back().s1 = w.offset;
            }
            off->chunks.push_back({.e0 = off->chunks.empty() ? 0 : w.first,
                                   .e1 = ms.numel,
                                   .s0 = off->chunks.empty() ? 0 : w.offset,
                                   .s1 = ss.a_floats,
                                   .where = {}});
            bytes = 0;
          }
          Chunk& c = off->chunks.back();
          ParamState rebased = w;
          rebased.first -= c.e0;
          rebased.offset -= c.s0;
          c.where.push_back(rebased);
          const std::int64_t next_first =
              p + 1 < ss.where.size() ? ss.where[p + 1].first : ms.numel;
          const std::int64_t next_offset =
              p + 1 < ss.where.size() ? ss.where[p + 1].offset : ss.a_floats;
          bytes += (next_first - w.first) * per_element + (next_offset - w.offset) * 4;
        }
      }
      off->on_nvme = true;
      off->first_chunk = nvme_chunk_slices_.size();
      for (const Chunk& c : off->chunks) {
        ChunkShape shape;
        shape.part_bytes = {static_cast<std::size_t>(c.e1 - c.e0) * 4,
                            static_cast<std::size_t>(c.s1 - c.s0) * 4};
        if (ss.b_floats > 0) shape.part_bytes.push_back(static_cast<std::size_t>(c.e1 - c.e0) * 4);
        nvme_shapes.push_back(std::move(shape));
        nvme_chunk_slices_.push_back(k);
        nvme_initial.push_back(std::vector<float>(initial.begin() + c.e0, initial.begin() + c.e1));
      }
      offload_stats_.nvme_bytes += (n + static_cast<std::size_t>(ss.a_floats + ss.b_floats)) * 4;
    }
    offload_stats_.host_bytes += n * (gbytes * static_cast<std::size_t>(grad_buffers) + pbytes);
    off_[k] = std::move(off);
  }
  if (!nvme_shapes.empty()) {
    EBB_ASSIGN_OR_RETURN(
        nvme_store_, NvmeChunkStore::create(
                         *nvme, tier, {.name = "optimizer_state", .chunks = std::move(nvme_shapes)},
                         [&](std::size_t chunk, std::size_t part, std::span<std::byte> out) {
                           if (part == 0) {
                             std::memcpy(out.data(), nvme_initial[chunk].data(), out.size());
                           } else {
                             std::memset(out.data(), 0, out.size());
                           }
                         }));
  }
  model_.set_master_reader([this](std::size_t slice, std::span<float> out) -> Status {
    // The masters are the first blobs, one per slice.
    return read_blob(slice, std::as_writable_bytes(out));
  });
  model_.set_gradient_listener([this](std::size_t slice) { return on_gradients_final(slice); });
  return ok_status();
}

Optimizer::Optimizer(Engine& engine, ModelState& model, const OptimizerConfig& config,
                     const OffloadOptions& offload)
    : engine_(engine), model_(model), config_(config), offload_(offload) {}

Optimizer::~Optimizer() {
  (void)wait_for_worker();
  model_.set_gradient_listener(nullptr);
  model_.set_master_reader(nullptr);
  (void)engine_.wait_reads();
  nvme_store_.reset();
  off_.clear();
  for (const StateBuffer& s : state_) (void)engine_.release(s.tensor);
  if (workspace_.valid()) (void)engine_.release(workspace_);
}

Status Optimizer::on_gradients_final(std::size_t slice) {
  if (off_[slice] == nullptr) return ok_status();
  ++offload_stats_.early_gradient_copies;
  return copy_gradients(slice);
}

Status Optimizer::copy_gradients(std::size_t slice) {
  OffSlice& off = *off_[slice];
  const int count = model_.accumulations(slice);
  // Started when the slice was final, and not written since.
  if (off.copied_step == model_.step_serial() && off.copied_at == count) return ok_status();
  const ModelState::Slice& ms = model_.slices()[slice];
  off.copied_step = model_.step_serial();
  off.copied_at = count;
  offload_stats_.gradient_bytes += static_cast<std::int64_t>(ms.grads.bytes());
  return engine_.read_async(ms.grads, off.grads[grad_buffer_], ms.grads.bytes());
}

Status Optimizer::simulated_cpu_step() {
  if (!host_step_cost_) {
    return failed_precondition(
        "the optimizer's step off the device on a sim device needs a cost for the host's work "
        "(Optimizer::set_host_step_cost; ebb train: a hardware profile with a chip, --hw)");
  }
  const std::size_t pbytes = dtype_bytes(model_.param_dtype());
  const std::size_t gbytes = dtype_bytes(model_.grad_dtype());
  HostStepWork work;
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    if (off_[k] == nullptr) continue;
    const auto n = static_cast<std::size_t>(model_.slices()[k].numel);
    const auto state_floats =
        n + static_cast<std::size_t>(slices_[k].a_floats + slices_[k].b_floats);
    const std::size_t traffic = host_step_traffic_bytes(n, state_floats, pbytes, gbytes);
    if (off_[k]->on_nvme) {
      work.nvme_slice_bytes += traffic;
      work.nvme_read_bytes += state_floats * sizeof(float);
      work.nvme_write_bytes += state_floats * sizeof(float);
    } else {
      work.host_slice_bytes += traffic;
    }
  }
  const std::chrono::nanoseconds cost = host_step_cost_(work);
  EBB_RETURN_IF_ERROR(simulate_host_work(engine_.device(), cost));
  offload_stats_.cpu_step_s += std::chrono::duration<double>(cost).count();
  ++offload_stats_.cpu_steps;
  return ok_status();
}

Status Optimizer::cpu_step(const StepArgs& args, int buffer) {
  if (simulated()) return simulated_cpu_step();
  const auto start = std::chrono::steady_clock::now();
  const std::size_t pbytes = dtype_bytes(model_.param_dtype());
  const std::size_t gbytes = dtype_bytes(model_.grad_dtype());
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    if (off_[k] == nullptr) continue;
    OffSlice& off = *off_[k];
    const SliceState& ss = slices_[k];
    if (off.on_nvme) continue;
    const UpdateBuffers b{.param = off.params,
                          .master = off.master,
                          .a = off.a,
                          .b = off.b,
                          .grad = off.grads[buffer],
                          .workspace = host_workspace_.data()};
    run_update(kHostContext, k, ss.where, model_.slices()[k].numel, b, args);
  }
  if (nvme_store_ != nullptr) {
    // Every NVMe slice's chunks in one stream.
    EBB_RETURN_IF_ERROR(nvme_store_->stream(
        [&](std::size_t chunk, std::span<const std::span<std::byte>> parts) -> Status {
          const std::size_t k = nvme_chunk_slices_[chunk];
          OffSlice& off = *off_[k];
          const Chunk& c = off.chunks[chunk - off.first_chunk];
          const UpdateBuffers b{
              .param =
                  static_cast<std::byte*>(off.params) + c.e0 * static_cast<std::int64_t>(pbytes),
              .master = reinterpret_cast<float*>(parts[0].data()),
              .a = reinterpret_cast<float*>(parts[1].data()),
              .b = parts.size() > 2 ? reinterpret_cast<float*>(parts[2].data()) : nullptr,
              .grad = static_cast<const std::byte*>(off.grads[buffer]) +
                      c.e0 * static_cast<std::int64_t>(gbytes),
              .workspace = host_workspace_.data()};
          run_update(kHostContext, k, c.where, c.e1 - c.e0, b, args);
          return ok_status();
        }));
    const ChunkStoreStats st = nvme_store_->stats();
    offload_stats_.nvme_read_s += st.last_read_s;
    offload_stats_.nvme_write_s += st.last_write_s;
    offload_stats_.nvme_update_s += st.last_compute_s;
  }
  offload_stats_.cpu_step_s += seconds_since(start);
  ++offload_stats_.cpu_steps;
  return ok_status();
}

Status Optimizer::install_parameters() {
  if (!parameters_ready_) return ok_status();
  parameters_ready_ = false;
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    if (off_[k] == nullptr) continue;
    const Tensor& params = model_.slices()[k].params;
    EBB_RETURN_IF_ERROR(engine_.replace_on_host(params, off_[k]->params, params.bytes()));
    offload_stats_.parameter_bytes += static_cast<std::int64_t>(params.bytes());
    EBB_RETURN_IF_ERROR(engine_.prefetch(params).status());
  }
  return ok_status();
}

Status Optimizer::wait_for_worker() {
  if (!worker_.has_value()) return ok_status();
  const auto start = std::chrono::steady_clock::now();
  Status s = worker_->get();
  worker_.reset();
  offload_stats_.wait_s += seconds_since(start);
  if (s.ok()) parameters_ready_ = true;
  return s;
}

Status Optimizer::flush() {
  EBB_RETURN_IF_ERROR(wait_for_worker());
  return install_parameters();
}

OffloadStats Optimizer::offload_stats() const { return offload_stats_; }

std::vector<Optimizer::Blob> Optimizer::blobs() const {
  std::vector<Blob> out;
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    const ModelState::Slice& ms = model_.slices()[k];
    out.push_back({"master." + slice_base(k), static_cast<std::size_t>(ms.numel) * sizeof(float)});
  }
  for (std::size_t k = 0; k < slices_.size(); ++k) {
    const SliceState& ss = slices_[k];
    const std::string base = "optimizer." + slice_base(k) + ".";
    const std::string a = config_.kind == OptimizerKind::kAdamW       ? "adamw_m"
                          : config_.kind == OptimizerKind::kAdafactor ? "adafactor_second_moment"
                                                                      : "sm3_accumulators";
    const std::string b = config_.kind == OptimizerKind::kAdamW       ? "adamw_v"
                          : config_.kind == OptimizerKind::kAdafactor ? "adafactor_first_moment"
                                                                      : "sm3_momentum";
    // A device buffer holds at least one float.
    const auto bytes = [&](std::int64_t floats) {
      return static_cast<std::size_t>(std::max<std::int64_t>(floats, 1)) * sizeof(float);
    };
    out.push_back({base + a, bytes(ss.a_floats)});
    if (ss.b_floats > 0) out.push_back({base + b, bytes(ss.b_floats)});
  }
  return out;
}

namespace {

// Which slice and which part (0 master, 1 a, 2 b) blob i is, over slices that each have a `b`
// buffer when b_floats > 0 (blobs() order); part -1 when there is no blob i.
template <typename SliceState>
std::pair<std::size_t, int> blob_place(std::size_t i, const std::vector<SliceState>& slices) {
  const std::size_t n = slices.size();
  if (i < n) return {i, 0};
  std::size_t j = n;
  for (std::size_t k = 0; k < n; ++k) {
    if (j == i) return {k, 1};
    ++j;
    if (slices[k].b_floats > 0) {
      if (j == i) return {k, 2};
      ++j;
    }
  }
  return {n, -1};
}

}  // namespace

Status Optimizer::read_blob(std::size_t i, std::span<std::byte> out) {
  // Plain variables, not a structured binding: the lambdas below capture them.
  const std::pair<std::size_t, int> place = blob_place(i, slices_);
  const std::size_t k = place.first;
  const int part = place.second;
  if (part < 0) return invalid_argument("optimizer state blob " + std::to_string(i));
  if (off_[k] != nullptr && simulated()) return simulated_values_refused("read_blob");
  const ModelState::Slice& ms = model_.slices()[k];
  const SliceState& ss = slices_[k];
  std::fill(out.begin(), out.end(), std::byte{0});
  if (off_[k] == nullptr) {
    const Tensor& t = part == 0 ? ms.master_weights() : part == 1 ? ss.a : ss.b;
    return engine_.read(t, out.data(), std::min(out.size(), t.bytes()));
  }
  EBB_RETURN_IF_ERROR(wait_for_worker());
  OffSlice& off = *off_[k];
  if (!off.on_nvme) {
    const float* src = part == 0 ? off.master : part == 1 ? off.a : off.b;
    const std::int64_t floats = part == 0 ? ms.numel : part == 1 ? ss.a_floats : ss.b_floats;
    std::memcpy(out.data(), src,
                std::min(out.size(), static_cast<std::size_t>(floats) * sizeof(float)));
    return ok_status();
  }
  return nvme_store_->read_all(
      [&](std::size_t chunk, std::size_t p, std::span<const std::byte> bytes) {
        if (static_cast<int>(p) != part || nvme_chunk_slices_[chunk] != k) return;
        const Chunk& c = off.chunks[chunk - off.first_chunk];
        const std::int64_t first = part == 1 ? c.s0 : c.e0;
        const std::size_t at = static_cast<std::size_t>(first) * sizeof(float);
        if (at < out.size())
          std::memcpy(out.data() + at, bytes.data(), std::min(bytes.size(), out.size() - at));
      });
}

Status Optimizer::write_blob(std::size_t i, std::span<const std::byte> in) {
  // Plain variables, not a structured binding: the lambdas below capture them.
  const std::pair<std::size_t, int> place = blob_place(i, slices_);
  const std::size_t k = place.first;
  const int part = place.second;
  if (part < 0) return invalid_argument("optimizer state blob " + std::to_string(i));
  if (off_[k] != nullptr && simulated()) return simulated_values_refused("write_blob");
  EBB_RETURN_IF_ERROR(flush());
  const ModelState::Slice& ms = model_.slices()[k];
  const SliceState& ss = slices_[k];
  if (part == 0) {
    // The working copy is the master rounded, as the optimizer leaves it.
    const std::span<const float> master(reinterpret_cast<const float*>(in.data()),
                                        static_cast<std::size_t>(ms.numel));
    const std::vector<std::byte> rounded = round_to_dtype(master, model_.param_dtype());
    EBB_RETURN_IF_ERROR(engine_.write(ms.params, rounded.data(), rounded.size()));
  }
  if (off_[k] == nullptr) {
    const Tensor& t = part == 0 ? ms.master_weights() : part == 1 ? ss.a : ss.b;
    if (part == 0 && !ms.master.valid()) return ok_status();  // fp32: the parameters themselves
    return engine_.write(t, in.data(), std::min(in.size(), t.bytes()));
  }
  OffSlice& off = *off_[k];
  if (!off.on_nvme) {
    float* dst = part == 0 ? off.master : part == 1 ? off.a : off.b;
    const std::int64_t floats = part == 0 ? ms.numel : part == 1 ? ss.a_floats : ss.b_floats;
    std::memcpy(dst, in.data(), std::min(in.size(), static_cast<std::size_t>(floats) * 4));
    return ok_status();
  }
  // Every part of every chunk is rewritten: this part from `in`, the others as they are.
  std::vector<std::vector<std::vector<std::byte>>> keep(nvme_chunk_slices_.size());
  EBB_RETURN_IF_ERROR(nvme_store_->read_all(
      [&](std::size_t chunk, std::size_t p, std::span<const std::byte> bytes) {
        keep[chunk].resize(std::max(keep[chunk].size(), p + 1));
        keep[chunk][p].assign(bytes.begin(), bytes.end());
      }));
  return nvme_store_->write_all([&](std::size_t chunk, std::size_t p, std::span<std::byte> out) {
    if (static_cast<int>(p) != part || nvme_chunk_slices_[chunk] != k) {
      std::memcpy(out.data(), keep[chunk][p].data(), out.size());
      return;
    }
    const Chunk& c = off.chunks[chunk - off.first_chunk];
    const std::size_t at = static_cast<std::size_t>(part == 1 ? c.s0 : c.e0) * sizeof(float);
    std::memset(out.data(), 0, out.size());
    if (at < in.size())
      std::memcpy(out.data(), in.data() + at, std::min(out.size(), in.size() - at));
  });
}

}  // namespace ebb
