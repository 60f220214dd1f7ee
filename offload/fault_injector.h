// FaultInjector: makes a chosen request of the NVMe tier fail, so that tests can check that every
// failure is detected and named, never turned into silent garbage.
//
// A test arms one fault per direction: the nth request (0-based, counted from arm()) of that
// direction fails with an I/O error (EIO), completes short, hits ENOSPC, or has one bit flipped
// (on a write after its checksum was taken, on a read before it is verified). The tier asks
// next() once per request it submits; a tier built without an injector (the default) asks
// nothing, so the layer costs nothing when it is off.
//
// Ownership: owned by the test; must outlive the tier it is given to.
// Thread safety: thread-safe (one mutex).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>

namespace ebb {

enum class FaultKind : std::uint8_t { kIoError, kShort, kNoSpace, kBitFlip };
enum class FaultDirection : std::uint8_t { kWrite, kRead };

// "EIO", "short", "ENOSPC", "bit flip".
std::string_view fault_kind_name(FaultKind kind);

class FaultInjector {
 public:
  // The `nth` request of `direction` from now on fails with `kind`; replaces an armed fault of
  // the same direction.
  void arm(FaultDirection direction, FaultKind kind, std::uint64_t nth = 0);
  void disarm();
  // For the tier: the fault to inject into the request it is about to submit, if any.
  std::optional<FaultKind> next(FaultDirection direction);
  // Faults injected since creation.
  std::uint64_t fired() const;

 private:
  struct Armed {
    FaultKind kind = FaultKind::kIoError;
    std::uint64_t countdown = 0;  // requests to let pass first
    bool armed = false;
  };
  mutable std::mutex mu_;
  Armed armed_[2];           // GUARDED_BY(mu_); by FaultDirection
  std::uint64_t fired_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace ebb
