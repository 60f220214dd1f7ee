#include "allocator/arena_csv.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>
#include <utility>

namespace ebb {
namespace {

constexpr std::size_t kMaxCsvTotalBytes = std::size_t{1} << 62;  // as check_plan_buffers

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = line.find(',', start);
    fields.push_back(trim(line.substr(start, comma - start)));
    if (comma == std::string_view::npos) return fields;
    start = comma + 1;
  }
}

template <typename T>
bool parse_number(std::string_view text, T& value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

// Sort key of an id: numeric ids by value, before text ids, which sort as text.
struct IdKey {
  bool text = false;
  std::uint64_t number = 0;
  std::string_view name;
  bool operator==(const IdKey& other) const {
    return std::tie(text, number, name) == std::tie(other.text, other.number, other.name);
  }
  bool operator<(const IdKey& other) const {
    return std::tie(text, number, name) < std::tie(other.text, other.number, other.name);
  }
};

IdKey id_key(std::string_view id) {
  IdKey key;
  key.text = !parse_number(id, key.number);
  if (key.text) key.name = id;
  return key;
}

enum Column { kId, kLower, kUpper, kSize, kAlignment, kOffset, kColumnCount };
const char* const kColumnNames[kColumnCount] = {"id",   "lower",     "upper",
                                                "size", "alignment", "offset"};

}  // namespace

Result<ArenaProblem> parse_arena_csv(std::string_view text, const std::string& source_name) {
  ArenaProblem problem;
  problem.path = source_name;
  std::size_t line_number = 0;
  auto error = [&](const std::string& what) {
    return invalid_argument(source_name + ":" + std::to_string(line_number) + ": " + what);
  };
  int column_of[kColumnCount];
  std::fill(std::begin(column_of), std::end(column_of), -1);
  std::size_t columns = 0;
  std::size_t total_bytes = 0;
  std::string previous_id;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = trim(text.substr(pos, end - pos));
    pos = end + 1;
    ++line_number;
    if (line.empty()) continue;
    std::vector<std::string_view> fields = split(line);
    if (columns == 0) {  // the header
      for (std::size_t f = 0; f < fields.size(); ++f) {
        int column = -1;
        for (int c = 0; c < kColumnCount; ++c) {
          if (fields[f] == kColumnNames[c]) column = c;
        }
        if (column < 0) return error("unknown column \"" + std::string(fields[f]) + "\"");
        if (column_of[column] >= 0) return error("column " + std::string(fields[f]) + " twice");
        column_of[column] = static_cast<int>(f);
      }
      for (int c : {kId, kLower, kUpper, kSize}) {
        if (column_of[c] < 0) {
          return error(std::string("the header has no ") + kColumnNames[c] +
                       " column (expected id,lower,upper,size)");
        }
      }
      columns = fields.size();
      continue;
    }
    if (fields.size() != columns) {
      return error(std::to_string(fields.size()) + " fields where the header has " +
                   std::to_string(columns));
    }
    const std::string_view id = fields[column_of[kId]];
    if (id.empty()) return error("empty id");
    if (!problem.ids.empty()) {
      const IdKey key = id_key(id);
      const IdKey previous = id_key(previous_id);
      if (key == previous) return error("id " + std::string(id) + " repeats the previous line's");
      if (key < previous) {
        return error("id " + std::string(id) + " comes after id " + previous_id +
                     ": ids must be sorted");
      }
    }
    PlanBuffer buffer;
    const std::string_view lower = fields[column_of[kLower]];
    const std::string_view upper = fields[column_of[kUpper]];
    const std::string_view size = fields[column_of[kSize]];
    if (!parse_number(lower, buffer.lower)) {
      return error("lower \"" + std::string(lower) + "\" is not a 64-bit integer");
    }
    if (!parse_number(upper, buffer.upper)) {
      return error("upper \"" + std::string(upper) + "\" is not a 64-bit integer");
    }
    if (buffer.upper <= buffer.lower) {
      return error("upper " + std::string(upper) + " is not after lower " + std::string(lower) +
                   " (lifetimes are [lower, upper))");
    }
    std::int64_t signed_size = 0;
    if (parse_number(size, signed_size) && signed_size <= 0) {
      return error("size " + std::string(size) + " is not positive");
    }
    if (!parse_number(size, buffer.size_bytes)) {
      bool digits = !size.empty() && size.find_first_not_of("0123456789") == std::string::npos;
      return error("size \"" + std::string(size) + "\" " +
                   (digits ? "overflows 64 bits" : "is not an integer"));
    }
    if (buffer.size_bytes >= kMaxCsvTotalBytes ||
        kMaxCsvTotalBytes - total_bytes <= buffer.size_bytes) {
      return error("size " + std::string(size) + " brings the total past 2^62 bytes");
    }
    total_bytes += buffer.size_bytes;
    if (column_of[kAlignment] >= 0) {
      const std::string_view alignment = fields[column_of[kAlignment]];
      if (!parse_number(alignment, buffer.alignment) || buffer.alignment == 0 ||
          (buffer.alignment & (buffer.alignment - 1)) != 0 ||
          buffer.alignment >= kMaxCsvTotalBytes) {
        return error("alignment \"" + std::string(alignment) + "\" is not a power of two");
      }
      total_bytes += buffer.alignment;
    }
    IdKey key = id_key(id);
    buffer.id = key.text ? problem.buffers.size() : key.number;
    problem.buffers.push_back(buffer);
    problem.ids.emplace_back(id);
    problem.lines.push_back(line_number);
    previous_id = std::string(id);
  }
  if (columns == 0) {
    return invalid_argument(source_name + ": empty: no header line (id,lower,upper,size)");
  }
  return problem;
}

Result<ArenaProblem> read_arena_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open " + path);
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return io_error("cannot read " + path);
  return parse_arena_csv(text.str(), path);
}

std::size_t capacity_from_file_name(const std::string& path) {
  const std::string stem = std::filesystem::path(path).stem().string();  // "A.1048576"
  const std::size_t dot = stem.rfind('.');
  if (dot == std::string::npos) return 0;
  std::size_t capacity = 0;
  if (!parse_number(std::string_view(stem).substr(dot + 1), capacity)) return 0;
  return capacity;
}

Status write_arena_csv(const std::string& path, const ArenaProblem& problem,
                       const std::vector<std::size_t>& offsets) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return io_error("cannot write " + path);
  bool aligned = false;
  for (const PlanBuffer& b : problem.buffers) aligned = aligned || b.alignment != 1;
  out << "id,lower,upper,size" << (aligned ? ",alignment" : "") << ",offset\n";
  for (std::size_t i = 0; i < problem.buffers.size(); ++i) {
    const PlanBuffer& b = problem.buffers[i];
    out << problem.ids[i] << ',' << b.lower << ',' << b.upper << ',' << b.size_bytes;
    if (aligned) out << ',' << b.alignment;
    out << ',' << offsets[i] << '\n';
  }
  out.close();
  if (!out) return io_error("cannot write " + path);
  return ok_status();
}

}  // namespace ebb
