// SpinLock: the caching allocator's lock. An allocation served from the cache holds it for a few
// dozen nanoseconds, where a pthread mutex's lock and unlock calls cost as much again; a
// test-and-test-and-set lock inlines to one atomic exchange and one store. A waiter spins
// briefly, then yields its core, so a holder that is descheduled or busy in a slow path (mapping
// pages, waiting for a stream) does not burn the waiter's time.
//
// Thread-safe. Meets BasicLockable, for std::lock_guard and std::unique_lock.
#pragma once

#include <atomic>
#include <thread>

namespace ebb {

class SpinLock {
 public:
  void lock() {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      for (int spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  void unlock() { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace ebb
