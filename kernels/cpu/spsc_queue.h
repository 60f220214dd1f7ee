// SpscQueue: an unbounded FIFO with one producer and one consumer at a time, neither of which
// takes a lock. It is the queue of a cpu stream (CpuStream): the host threads that enqueue work
// serialise among themselves with a mutex of their own, and the stream's worker pops without
// any, so that the host and the worker never meet on a lock per op.
//
// Items live in blocks of kBlockItems, linked in push order. The producer publishes an item by
// storing the new push count; the consumer reads an item only below the count it has seen. A
// block the consumer has left is kept as the one spare the producer takes before allocating,
// so that a steady stream of work allocates nothing.
//
// Thread safety: push() by one thread at a time (callers serialise producers), take() by one
// thread at a time; pushed() from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace ebb {

template <typename T>
class SpscQueue {
 public:
  // Items per block: a block of cpu stream ops is about 5 KiB.
  static constexpr std::size_t kBlockItems = 64;

  SpscQueue() : head_(new Block), tail_(head_) {}
  ~SpscQueue() {
    for (Block* block = head_; block != nullptr;) {
      Block* next = block->next.load(std::memory_order_relaxed);
      delete block;
      block = next;
    }
    delete spare_.load(std::memory_order_relaxed);
  }
  SpscQueue(const SpscQueue&) = delete;
  SpscQueue& operator=(const SpscQueue&) = delete;

  // Items ever pushed. Sequentially consistent, so that a producer that pushes and then reads a
  // consumer's "asleep" flag, and a consumer that sets the flag and then reads this count, cannot
  // both miss each other.
  std::uint64_t pushed() const { return pushed_.load(std::memory_order_seq_cst); }

  // REQUIRES: no other push() runs concurrently.
  void push(T item) {
    if (tail_items_ == kBlockItems) {
      Block* block = spare_.exchange(nullptr, std::memory_order_acq_rel);
      if (block == nullptr) block = new Block;
      // Published by the count below: the consumer follows `next` only after it has seen it.
      tail_->next.store(block, std::memory_order_release);
      tail_ = block;
      tail_items_ = 0;
    }
    tail_->items[tail_items_++] = std::move(item);
    pushed_.store(pushed_.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
  }

  // Moves the oldest item out, leaving a default-constructed one in its place.
  // REQUIRES: no other take() runs concurrently, and more items were pushed than taken.
  T take() {
    if (head_items_ == kBlockItems) {
      Block* next = head_->next.load(std::memory_order_acquire);
      head_->next.store(nullptr, std::memory_order_relaxed);
      delete spare_.exchange(head_, std::memory_order_acq_rel);
      head_ = next;
      head_items_ = 0;
    }
    return std::exchange(head_->items[head_items_++], T{});
  }

 private:
  struct Block {
    std::array<T, kBlockItems> items;
    std::atomic<Block*> next{nullptr};
  };

  // Each side on its own cache line (64 bytes on x86 and most arm64), so that the consumer's
  // writes do not evict the line the producer writes, and back.
  static constexpr std::size_t kCacheLineBytes = 64;

  alignas(kCacheLineBytes) std::atomic<std::uint64_t> pushed_{0};
  // Consumer side.
  alignas(kCacheLineBytes) Block* head_;
  std::size_t head_items_ = 0;  // items of head_ already taken
  // Producer side.
  alignas(kCacheLineBytes) Block* tail_;
  std::size_t tail_items_ = 0;  // items of tail_ already pushed
  // A block the consumer has emptied, for the producer's next one; nullptr when none.
  std::atomic<Block*> spare_{nullptr};
};

}  // namespace ebb
