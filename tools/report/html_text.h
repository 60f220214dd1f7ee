// Small text helpers the report's HTML writers share: escaping and figures for people.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace ebb::report {

// Escapes &, <, >, " and ' for HTML text and attribute values, and for XML's (numeric
// references only): the SVG plots of `ebb bench suite` (tools/svg_plot.h) use it too.
std::string html_escape(std::string_view text);
// "1.50 GiB", "512 B": powers of 1024.
std::string human_bytes(std::size_t bytes);
// "1.234 ms", "12.5 us", "3.210 s": a duration in nanoseconds for people.
std::string human_ns(std::int64_t ns);
// Appends every part to `out`, without the temporaries of a chain of `+`.
void append(std::string& out, std::initializer_list<std::string_view> parts);
// A coordinate with one decimal ("12.5"), as SVG paths carry them.
std::string coord(double value);

}  // namespace ebb::report
