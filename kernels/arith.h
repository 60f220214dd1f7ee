// Integer arithmetic every layer uses: sizes rounded to pages, blocks and alignments.
//
// Thread safety: pure functions.
#pragma once

#include <concepts>
#include <type_traits>

namespace ebb {

// `n` rounded up to a multiple of `unit`. REQUIRES: unit > 0 and n + unit - 1 representable.
template <std::integral T>
constexpr T round_up(T n, std::type_identity_t<T> unit) {
  return (n + unit - 1) / unit * unit;
}

}  // namespace ebb
