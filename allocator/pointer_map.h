// PointerMap: live block address -> Block*, an open-addressing hash table.
//
// The caching allocator looks up every free() here; std::unordered_map costs a node allocation
// per insert and a pointer chase per lookup. Linear probing over a power-of-two table with
// backward-shift deletion (no tombstones) keeps both to a cache line or two.
//
// Thread safety: not thread-safe; guarded by the CachingAllocator's lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "allocator/block.h"

namespace ebb {

class PointerMap {
 public:
  PointerMap() : slots_(kInitialSlots) {}

  // REQUIRES: key != 0 and not present.
  void insert(std::uintptr_t key, Block* value) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    place(key, value);
    ++size_;
  }

  Block* find(std::uintptr_t key) const {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash(key) & mask;; i = (i + 1) & mask) {
      if (slots_[i].key == key) return slots_[i].value;
      if (slots_[i].key == 0) return nullptr;
    }
  }

  // Returns false when the key is absent.
  bool erase(std::uintptr_t key) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash(key) & mask;
    while (slots_[i].key != key) {
      if (slots_[i].key == 0) return false;
      i = (i + 1) & mask;
    }
    // Backward-shift: move later entries of the probe run into the hole where allowed.
    for (std::size_t j = (i + 1) & mask; slots_[j].key != 0; j = (j + 1) & mask) {
      const std::size_t home = hash(slots_[j].key) & mask;
      // Entry j may fill hole i when its home is not cyclically within (i, j].
      if (((j - home) & mask) >= ((j - i) & mask)) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = Slot{};
    --size_;
    return true;
  }

  std::size_t size() const { return size_; }

 private:
  struct Slot {
    std::uintptr_t key = 0;
    Block* value = nullptr;
  };
  static constexpr std::size_t kInitialSlots = 1024;

  // Blocks are 512-byte aligned: drop those bits, then multiply (Fibonacci hashing).
  static std::size_t hash(std::uintptr_t key) {
    return static_cast<std::size_t>(((key >> 9) * 0x9E3779B97F4A7C15ull) >> 20);
  }

  void place(std::uintptr_t key, Block* value) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash(key) & mask;
    while (slots_[i].key != 0) i = (i + 1) & mask;
    slots_[i] = Slot{key, value};
  }

  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& s : old) {
      if (s.key != 0) place(s.key, s.value);
    }
  }

  std::vector<Slot> slots_;
  std::size_t size_ = 0;
};

}  // namespace ebb
