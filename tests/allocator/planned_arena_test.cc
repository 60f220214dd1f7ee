// The planned arena on the cpu device: planned offsets, every fallback case, the shared budget,
// and a replay through it.
#include "allocator/planned_arena.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace ebb {
namespace {

using ::testing::HasSubstr;

class PlannedArenaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DeviceOptions options;
    options.capacity_bytes = 64 * kMiB;
    auto device = create_device(options);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    device_ = std::move(device).value();
  }

  std::unique_ptr<CachingAllocator> allocator(std::size_t budget_bytes) {
    CachingAllocatorOptions options;
    options.budget_bytes = budget_bytes;
    auto made = CachingAllocator::create(*device_, options);
    EXPECT_TRUE(made.ok()) << made.status().to_string();
    return made.ok() ? std::move(made).value() : nullptr;
  }

  Stream& stream() { return device_->default_stream(); }

  // Three buffers of 1 MiB: 10 and 11 overlap in time, 12 comes after 10.
  std::vector<PlanBuffer> buffers_ = {
      PlanBuffer{.id = 10, .lower = 0, .upper = 2, .size_bytes = kMiB, .alignment = 512},
      PlanBuffer{.id = 11, .lower = 1, .upper = 4, .size_bytes = kMiB, .alignment = 512},
      PlanBuffer{.id = 12, .lower = 2, .upper = 4, .size_bytes = kMiB, .alignment = 512},
  };
  std::unique_ptr<Device> device_;
};

ArenaPlan plan_of(const std::vector<PlanBuffer>& buffers) {
  Result<ArenaPlan> plan = plan_arena(buffers, {});
  EXPECT_TRUE(plan.ok()) << plan.status().to_string();
  return plan.ok() ? *plan : ArenaPlan{};
}

TEST_F(PlannedArenaTest, ServesThePlanAtItsOffsetsInOneReservation) {
  auto alloc = allocator(0);
  const ArenaPlan plan = plan_of(buffers_);
  ASSERT_EQ(plan.height_bytes, 2 * kMiB);
  auto arena = PlannedArena::create(*alloc, stream(), buffers_, plan);
  ASSERT_TRUE(arena.ok()) << arena.status().to_string();
  Result<void*> a = (*arena)->allocate(10, kMiB, stream());
  Result<void*> b = (*arena)->allocate(11, kMiB - 100, stream());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(
      static_cast<char*>(*b) - static_cast<char*>(*a),
      static_cast<std::ptrdiff_t>(plan.offsets[1]) - static_cast<std::ptrdiff_t>(plan.offsets[0]));
  ASSERT_TRUE((*arena)->free(*a).ok());
  Result<void*> c = (*arena)->allocate(12, kMiB, stream());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, *a);  // 12 reuses 10's bytes, as planned
  const PlannedArenaStats stats = (*arena)->stats();
  EXPECT_EQ(stats.planned_allocs, 3);
  EXPECT_EQ(stats.fallback_allocs, 0);
  EXPECT_EQ(stats.planned_bytes.current, static_cast<std::int64_t>(2 * kMiB - 100));
  EXPECT_EQ(stats.arena_bytes, 2 * kMiB);
  // The reservation is one live block of the allocator.
  EXPECT_EQ(alloc->stats().all.allocation.current, 1);
  EXPECT_EQ(alloc->stats().all.allocated_bytes.current, static_cast<std::int64_t>(2 * kMiB));
  ASSERT_TRUE((*arena)->free(*b).ok());
  ASSERT_TRUE((*arena)->free(*c).ok());
}

TEST_F(PlannedArenaTest, AnythingOutsideThePlanFallsBackAndIsCounted) {
  auto alloc = allocator(0);
  auto arena = PlannedArena::create(*alloc, stream(), buffers_, plan_of(buffers_));
  ASSERT_TRUE(arena.ok()) << arena.status().to_string();
  PlannedArena& a = **arena;
  // A plan id the plan does not know (a new tensor).
  Result<void*> unknown = a.allocate(99, 4096, stream());
  // More bytes than planned (a new shape).
  Result<void*> bigger = a.allocate(10, kMiB + 1, stream());
  ASSERT_TRUE(unknown.ok() && bigger.ok());
  EXPECT_EQ(a.stats().fallback_allocs, 2);
  // A divergent iteration: 10 lives longer than profiled, so 12 (planned over it) must not
  // get the same bytes.
  Result<void*> ten = a.allocate(10, kMiB, stream());
  Result<void*> twelve = a.allocate(12, kMiB, stream());
  ASSERT_TRUE(ten.ok() && twelve.ok());
  EXPECT_NE(*ten, *twelve);
  // The same plan id twice while live.
  Result<void*> ten_again = a.allocate(10, kMiB, stream());
  ASSERT_TRUE(ten_again.ok());
  EXPECT_NE(*ten_again, *ten);
  // Another stream: planned bytes are reused in the arena stream's order only.
  auto other = device_->create_stream();
  ASSERT_TRUE(other.ok());
  Result<void*> elsewhere = a.allocate(11, kMiB, **other);
  ASSERT_TRUE(elsewhere.ok());
  const PlannedArenaStats stats = a.stats();
  EXPECT_EQ(stats.planned_allocs, 1);
  EXPECT_EQ(stats.fallback_allocs, 5);
  EXPECT_EQ(stats.fallback_bytes.current,
            static_cast<std::int64_t>(4096 + (kMiB + 1) + kMiB + kMiB + kMiB));
  for (void* p : {*unknown, *bigger, *ten, *twelve, *ten_again, *elsewhere}) {
    ASSERT_TRUE(a.free(p).ok());
  }
  EXPECT_EQ(a.stats().fallback_bytes.current, 0);
  EXPECT_EQ(a.stats().planned_bytes.current, 0);
  int not_ours = 0;
  EXPECT_THAT(a.free(&not_ours).message(), HasSubstr("did not allocate"));
  // A pointer into the arena that no allocation holds.
  Result<void*> planned = a.allocate(10, kMiB, stream());
  ASSERT_TRUE(planned.ok());
  EXPECT_THAT(a.free(static_cast<char*>(*planned) + 512).message(),
              HasSubstr("no live allocation"));
  ASSERT_TRUE(a.free(*planned).ok());
}

TEST_F(PlannedArenaTest, ReservationAndFallbackShareTheBudget) {
  // Budget 4 MiB: the 2 MiB arena leaves 2 MiB (one page) for fallbacks.
  auto alloc = allocator(4 * kMiB);
  auto arena = PlannedArena::create(*alloc, stream(), buffers_, plan_of(buffers_));
  ASSERT_TRUE(arena.ok()) << arena.status().to_string();
  Result<void*> fits = (*arena)->allocate(99, 2 * kMiB, stream());
  ASSERT_TRUE(fits.ok()) << fits.status().to_string();
  Result<void*> too_much = (*arena)->allocate(98, 2 * kMiB, stream());
  EXPECT_EQ(too_much.status().code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(alloc->stats().all.reserved_bytes.peak, static_cast<std::int64_t>(4 * kMiB));
  ASSERT_TRUE((*arena)->free(*fits).ok());
  // A budget below the plan's height cannot hold the reservation at all.
  std::vector<PlanBuffer> tall = buffers_;
  for (PlanBuffer& b : tall) b.size_bytes = 2 * kMiB;
  auto small = allocator(2 * kMiB);
  EXPECT_THAT(PlannedArena::create(*small, stream(), tall, plan_of(tall)).status().message(),
              HasSubstr("budget"));
}

TEST_F(PlannedArenaTest, RejectsAPlanThatDoesNotValidate) {
  auto alloc = allocator(0);
  ArenaPlan plan = plan_of(buffers_);
  plan.offsets[1] = plan.offsets[0];  // 10 and 11 overlap in time
  EXPECT_THAT(PlannedArena::create(*alloc, stream(), buffers_, plan).status().message(),
              HasSubstr("overlap in memory"));
  std::vector<PlanBuffer> twins = buffers_;
  twins[2].id = 10;
  EXPECT_THAT(PlannedArena::create(*alloc, stream(), twins, plan_of(twins)).status().message(),
              HasSubstr("share plan id 10"));
}

TEST_F(PlannedArenaTest, ReplayThroughThePlanReservesTheHeight) {
  std::vector<AllocEvent> events;
  auto alloc_event = [&](std::uint64_t id, std::size_t bytes) {
    AllocEvent e;
    e.id = id;
    e.bytes = bytes;
    events.push_back(e);
  };
  auto free_event = [&](std::uint64_t id) {
    AllocEvent e;
    e.op = AllocEvent::Op::kFree;
    e.id = id;
    events.push_back(e);
  };
  alloc_event(1, 3 * kMiB);
  alloc_event(2, 5 * kMiB);
  free_event(1);
  alloc_event(3, 4 * kMiB);
  free_event(2);
  alloc_event(4, 6 * kMiB);
  Result<std::vector<PlanBuffer>> buffers = plan_buffers_from_events(events, 512);
  ASSERT_TRUE(buffers.ok()) << buffers.status().to_string();
  const ArenaPlan plan = plan_of(*buffers);
  EXPECT_EQ(plan.height_bytes, 10 * kMiB);  // the lower bound: 4 + 6 MiB
  Result<PlannedReplayResult> planned = replay_planned(events, *buffers, plan, *device_, {});
  ASSERT_TRUE(planned.ok()) << planned.status().to_string();
  EXPECT_EQ(planned->arena.fallback_allocs, 0);
  EXPECT_EQ(planned->arena.planned_allocs, 4);
  EXPECT_EQ(planned->replay.peak_live_bytes, 10 * kMiB);
  EXPECT_EQ(planned->replay.peak_reserved_bytes, 10 * kMiB);
  events[0].stream = 1;
  EXPECT_THAT(replay_planned(events, *buffers, plan, *device_, {}).status().message(),
              HasSubstr("stream 0 only"));
}

}  // namespace
}  // namespace ebb
