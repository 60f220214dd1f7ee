#include "kernels/cpu/process_memory.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "kernels/cpu/cpu_memory.h"

namespace ebb {

Result<std::size_t> process_resident_bytes() {
  constexpr const char* kPath = "/proc/self/statm";
  std::FILE* f = std::fopen(kPath, "r");
  if (f == nullptr) {
    return io_error(std::string("cannot open ") + kPath + ": " + std::strerror(errno));
  }
  // statm: size resident shared text lib data dt, in pages.
  unsigned long long size_pages = 0;
  unsigned long long resident_pages = 0;
  const int fields = std::fscanf(f, "%llu %llu", &size_pages, &resident_pages);
  std::fclose(f);
  if (fields != 2) return io_error(std::string("cannot parse ") + kPath);
  return static_cast<std::size_t>(resident_pages) * os_page_bytes();
}

}  // namespace ebb
