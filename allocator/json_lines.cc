#include "allocator/json_lines.h"

namespace ebb {

Result<bool> JsonLines::next(nlohmann::json& object) {
  while (!rest_.empty()) {
    const std::size_t eol = rest_.find('\n');
    const std::string_view line = rest_.substr(0, eol);
    rest_ = eol == std::string_view::npos ? std::string_view() : rest_.substr(eol + 1);
    ++line_number_;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    object = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (object.is_discarded() || !object.is_object()) return error("not a JSON object");
    return true;
  }
  return false;
}

Status JsonLines::error_at(std::size_t line, std::string_view message) const {
  std::string text = source_name_;
  text += ':';
  text += std::to_string(line);
  text += ": ";
  text += message;
  return invalid_argument(std::move(text));
}

}  // namespace ebb
