#include "offload/host_tier.h"

#include <gtest/gtest.h>

namespace ebb {
namespace {

TEST(HostTierTest, TracksOwnersUnderItsCapacity) {
  auto device = create_device({}).value();
  auto tier = HostTier::create(*device, 4 * kMiB).value();
  Result<void*> a = tier->allocate("a", 3 * kMiB);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  Result<void*> b = tier->allocate("b", 100);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(tier->owner(*a).has_value());
  EXPECT_EQ(tier->owner(*a)->tensor, "a");
  EXPECT_EQ(tier->owner(*b)->bytes, 100U);
  EXPECT_EQ(tier->owners().size(), 2U);
  EXPECT_EQ(tier->free_bytes(), kMiB - 4 * kKiB);

  Result<void*> c = tier->allocate("c", 2 * kMiB);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(c.status().message().find("'c'"), std::string::npos) << c.status().to_string();

  ASSERT_TRUE(tier->free(*a).ok());
  EXPECT_FALSE(tier->owner(*a).has_value());
  EXPECT_EQ(tier->free(*a).code(), StatusCode::kInvalidArgument);
  c = tier->allocate("c", 2 * kMiB);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(tier->owner(*c)->tensor, "c");
  ASSERT_TRUE(tier->free(*b).ok());
  ASSERT_TRUE(tier->free(*c).ok());
  EXPECT_EQ(tier->stats().allocated_bytes, 0U);
}

}  // namespace
}  // namespace ebb
