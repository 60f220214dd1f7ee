#include "engine/schema/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ebb {
namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

Status write_file_atomically(const std::string& path, std::string_view text) {
  // A unique temporary name beside the target, so that rename() is atomic (same file system).
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) return io_error("cannot create a temporary file for " + path + ": " + errno_text());
  auto fail = [&](const std::string& what) {
    std::string message = what + " " + tmp + " (for " + path + "): " + errno_text();
    close(fd);
    unlink(tmp.c_str());
    return io_error(message);
  };
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write");
    done += static_cast<std::size_t>(n);
  }
  // mkstemp makes the file 0600; profiles and plans are data to share. (Reading the umask to honour
  // it would change it for a moment in every thread of the process.)
  if (fchmod(fd, 0644) != 0) return fail("cannot set the mode of");
  if (fsync(fd) != 0) return fail("cannot fsync");
  if (close(fd) != 0) {
    std::string message = "cannot close " + tmp + " (for " + path + "): " + errno_text();
    unlink(tmp.c_str());
    return io_error(message);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    std::string message = "cannot rename " + tmp + " to " + path + ": " + errno_text();
    unlink(tmp.c_str());
    return io_error(message);
  }
  // The rename itself is durable once the directory is synced.
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd < 0 || fsync(dir_fd) != 0) {
    std::string message = "cannot fsync the directory " + dir + " of " + path + ": " + errno_text();
    if (dir_fd >= 0) close(dir_fd);
    return io_error(message);
  }
  close(dir_fd);
  return ok_status();
}

Result<std::string> read_text_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open " + std::string(what) + " " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return io_error("error reading " + std::string(what) + " " + path);
  return text.str();
}

Status os_error(const std::string& what, int err) {
  return io_error(what + ": " + std::strerror(err));
}

}  // namespace ebb
