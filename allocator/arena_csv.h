// ArenaProblem CSV: the file format of static memory allocation problems used by MiniMalloc
// (google/minimalloc, benchmarks/): a header line naming the columns, then one buffer a line,
//   id,lower,upper,size[,alignment][,offset]
// in any column order. `id` is the buffer's name (an unsigned integer, or text such as "b1");
// rows are sorted by id (numeric ids by value, before text ids, which sort as text) and no id
// repeats. The buffer is live over [lower, upper) and needs `size` bytes, aligned to
// `alignment` (default 1). An `offset` column (a solution) is read over and ignored. The
// number in a file name such as "A.1048576.csv" is the problem's capacity.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "allocator/arena_plan.h"
#include "kernels/status.h"

namespace ebb {

// A problem as read. Ownership: owns its buffers and ids.
struct ArenaProblem {
  std::string path;                 // the file it was read from (or the name given to parse)
  std::vector<PlanBuffer> buffers;  // in file order; id: the numeric id, or the row index
  std::vector<std::string> ids;     // per buffer, the id as written
  std::vector<std::size_t> lines;   // per buffer, its 1-based line in the file
};

// Reads a problem. Malformed input is kInvalidArgument as "FILE:LINE: what is wrong": a
// missing or repeated column, a wrong number of fields, a number that does not parse, an id out
// of order or repeated, upper <= lower, a size that is zero, negative or overflows 64 bits,
// sizes adding up past 2^62 bytes, an alignment that is not a power of two. A missing file is
// kNotFound.
Result<ArenaProblem> read_arena_csv(const std::string& path);
// The same from text in memory; source_name stands in for the path in messages.
Result<ArenaProblem> parse_arena_csv(std::string_view text, const std::string& source_name);

// The capacity in a file name "NAME.CAPACITY.csv" (e.g. A.1048576.csv: 1048576), or 0.
std::size_t capacity_from_file_name(const std::string& path);

// Writes the problem with an `offset` column after the others, as MiniMalloc writes a solution.
// REQUIRES: offsets.size() == problem.buffers.size().
Status write_arena_csv(const std::string& path, const ArenaProblem& problem,
                       const std::vector<std::size_t>& offsets);

}  // namespace ebb
