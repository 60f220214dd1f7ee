// FreeBlockIndex: the free blocks of one pool, for best-fit lookup in near-constant time.
//
// Segregated fit: sizes below 32 KiB have one bin per 512-byte size; above, each power of two
// is split into 32 bins (sizes within 3% of each other). A bitmap of non-empty bins, and a
// summary word of non-empty bitmap words, find the next larger non-empty bin in two lookups. Each
// bin is an intrusive doubly linked list (LIFO, so a block freed and asked for again is found
// first).
//
// Thread safety: not thread-safe; guarded by the CachingAllocator's lock.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "allocator/block.h"

namespace ebb {

class FreeBlockIndex {
 public:
  static constexpr int kExactBins = 64;  // 512 B .. 32 KiB - 512 B, one size each
  static constexpr int kSubBinBits = 5;  // 32 bins per power of two above that
  static constexpr int kBins = kExactBins + (64 - 6) * (1 << kSubBinBits);
  static constexpr int kWords = (kBins + 63) / 64;
  // Longest stretch of one bin examined for a better fit; bins hold near-equal sizes.
  static constexpr int kMaxScan = 64;

  // REQUIRES: bytes is a positive multiple of 512.
  static int bin_of(std::size_t bytes) {
    const std::uint64_t units = bytes >> 9;
    if (units < kExactBins) return static_cast<int>(units);
    const int msb = 63 - std::countl_zero(units);
    const int sub = static_cast<int>((units >> (msb - kSubBinBits)) & ((1 << kSubBinBits) - 1));
    return kExactBins + (msb - 6) * (1 << kSubBinBits) + sub;
  }

  void insert(Block* block) {
    const int bin = bin_of(block->bytes);
    block->bin = static_cast<std::uint16_t>(bin);
    block->bin_prev = nullptr;
    block->bin_next = heads_[bin];
    if (heads_[bin] != nullptr) heads_[bin]->bin_prev = block;
    heads_[bin] = block;
    bitmap_[bin / 64] |= std::uint64_t{1} << (bin % 64);
    summary_ |= std::uint64_t{1} << (bin / 64);
    block->indexed = true;
    ++count_;
  }

  void remove(Block* block) {
    const int bin = block->bin;
    if (block->bin_prev != nullptr) {
      block->bin_prev->bin_next = block->bin_next;
    } else {
      heads_[bin] = block->bin_next;
      if (heads_[bin] == nullptr) {
        bitmap_[bin / 64] &= ~(std::uint64_t{1} << (bin % 64));
        if (bitmap_[bin / 64] == 0) summary_ &= ~(std::uint64_t{1} << (bin / 64));
      }
    }
    if (block->bin_next != nullptr) block->bin_next->bin_prev = block->bin_prev;
    block->bin_prev = block->bin_next = nullptr;
    block->indexed = false;
    --count_;
  }

  // The smallest free block of at least `bytes` that `accept` allows (lowest address among
  // equals), or nullptr.
  template <typename Accept>
  Block* best_fit(std::size_t bytes, Accept&& accept) const {
    int bin = bin_of(bytes);
    if (Block* b = best_in_bin(bin, bytes, accept)) return b;
    for (bin = next_nonempty(bin + 1); bin < kBins; bin = next_nonempty(bin + 1)) {
      if (Block* b = best_in_bin(bin, bytes, accept)) return b;
    }
    return nullptr;
  }

  std::size_t size() const { return count_; }

 private:
  template <typename Accept>
  Block* best_in_bin(int bin, std::size_t bytes, Accept& accept) const {
    Block* best = nullptr;
    int scanned = 0;
    for (Block* b = heads_[bin]; b != nullptr && scanned < kMaxScan; b = b->bin_next, ++scanned) {
      if (b->bytes < bytes || !accept(b)) continue;
      if (best == nullptr || b->bytes < best->bytes ||
          (b->bytes == best->bytes && b->address < best->address)) {
        best = b;
        if (b->bytes == bytes && bin < kExactBins) break;  // exact bins: nothing fits better
      }
    }
    return best;
  }

  int next_nonempty(int bin) const {
    if (bin >= kBins) return kBins;
    int word = bin / 64;
    const std::uint64_t bits = bitmap_[word] & (~std::uint64_t{0} << (bin % 64));
    if (bits != 0) return word * 64 + std::countr_zero(bits);
    // The summary has one bit per non-empty word: one more lookup finds the next bin.
    const std::uint64_t words = summary_ & (~std::uint64_t{0} << (word + 1));
    if (words == 0) return kBins;
    word = std::countr_zero(words);
    return word * 64 + std::countr_zero(bitmap_[word]);
  }

  std::array<Block*, kBins> heads_{};
  std::array<std::uint64_t, kWords> bitmap_{};
  std::uint64_t summary_ = 0;  // bit w: bitmap_[w] != 0
  static_assert(kWords < 64, "the summary word has one bit per bitmap word");
  std::size_t count_ = 0;
};

}  // namespace ebb
