// JsonLines: reads a JSON-lines text one object at a time, numbering lines from 1 and skipping
// blank ones, for the readers of line-oriented files (ebb alloc traces, DTR logs) whose errors
// must name the file and the line.
//
// Used only inside allocator/ .cc files (it exposes nlohmann::json, a private dependency).
// Thread safety: not thread-safe; one reader per thread.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "kernels/status.h"

namespace ebb {

class JsonLines {
 public:
  JsonLines(std::string_view text, std::string source_name)
      : rest_(text), source_name_(std::move(source_name)) {}

  // Reads the next non-blank line into `object`; false at the end of the text. A line that is
  // not a JSON object is kInvalidArgument naming its line.
  Result<bool> next(nlohmann::json& object);
  // The line of the object next() returned last (0 before the first).
  std::size_t line_number() const { return line_number_; }
  // kInvalidArgument "SOURCE:LINE: message", for the current line or a given one.
  Status error(std::string_view message) const { return error_at(line_number_, message); }
  Status error_at(std::size_t line, std::string_view message) const;

 private:
  std::string_view rest_;
  std::string source_name_;
  std::size_t line_number_ = 0;
};

}  // namespace ebb
