#include "offload/tier_directory.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>

namespace ebb {
namespace {

constexpr std::string_view kPrefix = "ebb-tier-";
constexpr const char* kOwnerFile = "owner";

std::string errno_text(int err) { return std::strerror(err); }

Status io_failure(const std::string& what, int err) {
  return io_error(what + ": " + errno_text(err));
}

// The pid written in a leftover's owner file, or -1.
long read_owner_pid(int fd) {
  char text[32] = {};
  const ssize_t n = pread(fd, text, sizeof text - 1, 0);
  if (n <= 0) return -1;
  return std::strtol(text, nullptr, 10);
}

// Removes the regular files in `dir` and the directory. ENOENT (someone else got there first)
// is not an error.
Status remove_tree(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return ok_status();
    return io_failure("opendir " + dir, errno);
  }
  Status first;
  while (const dirent* e = readdir(d)) {
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT && first.ok()) {
      first = io_failure("unlink " + dir + "/" + std::string(name), errno);
    }
  }
  closedir(d);
  if (rmdir(dir.c_str()) != 0 && errno != ENOENT && first.ok()) {
    first = io_failure("rmdir " + dir, errno);
  }
  return first;
}

}  // namespace

TierDirectory::TierDirectory(std::string path, int dir_fd, int lock_fd)
    : path_(std::move(path)), dir_fd_(dir_fd), lock_fd_(lock_fd) {
  struct stat st {};
  if (fstat(dir_fd_, &st) == 0) {
    device_id_ = st.st_dev;
    inode_ = st.st_ino;
  }
}

TierDirectory::~TierDirectory() {
  for (int fd : fds_) close(fd);
  // Removed by name inside the directory's descriptor: if the directory was replaced, what is
  // in its place is not ours to remove.
  for (const std::string& name : files_) unlinkat(dir_fd_, name.c_str(), 0);
  unlinkat(dir_fd_, kOwnerFile, 0);
  if (check_present().ok()) rmdir(path_.c_str());
  close(lock_fd_);
  close(dir_fd_);
}

Result<TierLeftovers> TierDirectory::clean_leftovers(const std::string& base) {
  TierLeftovers found;
  DIR* d = opendir(base.c_str());
  if (d == nullptr) {
    const int err = errno;
    if (err == ENOENT) return not_found("NVMe tier directory " + base + " does not exist");
    return io_failure("opendir " + base, err);
  }
  std::vector<std::string> candidates;
  while (const dirent* e = readdir(d)) {
    if (std::string_view(e->d_name).starts_with(kPrefix)) candidates.emplace_back(e->d_name);
  }
  closedir(d);
  for (const std::string& name : candidates) {
    std::string dir = base;
    dir += "/";
    dir += name;
    std::string owner = dir;
    owner += "/";
    owner += kOwnerFile;
    const int fd = open(owner.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      // No owner file: a run killed between mkdtemp and the lock, or not ebb's. Not ours to
      // judge; named so that a person can.
      found.in_use.push_back(dir);
      continue;
    }
    const long pid = read_owner_pid(fd);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      found.in_use.push_back(dir);
      continue;
    }
    Status removed = remove_tree(dir);
    close(fd);
    if (!removed.ok()) {
      return io_error("removing the leftover NVMe tier directory " + dir + " of process " +
                      std::to_string(pid) + ": " + removed.message());
    }
    std::fprintf(stderr,
                 "ebb: removed the leftover NVMe tier directory %s of process %ld, which is no "
                 "longer running\n",
                 dir.c_str(), pid);
    found.removed.push_back(dir);
  }
  return found;
}

Result<std::unique_ptr<TierDirectory>> TierDirectory::create(const std::string& base) {
  EBB_RETURN_IF_ERROR(clean_leftovers(base).status());
  std::string pattern = base + "/" + std::string(kPrefix) + "XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return io_failure("mkdtemp " + pattern, errno);
  const int dir_fd = open(pattern.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd < 0) {
    const int err = errno;
    rmdir(pattern.c_str());
    return io_failure("open " + pattern, err);
  }
  const int lock_fd =
      openat(dir_fd, kOwnerFile, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  Status failed;
  if (lock_fd < 0) {
    failed = io_failure("create " + pattern + "/" + kOwnerFile, errno);
  } else if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    failed = io_failure("flock " + pattern + "/" + kOwnerFile, errno);
  } else {
    const std::string pid = std::to_string(getpid()) + "\n";
    if (pwrite(lock_fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      failed = io_failure("write " + pattern + "/" + kOwnerFile, errno);
    }
  }
  if (!failed.ok()) {
    if (lock_fd >= 0) close(lock_fd);
    unlinkat(dir_fd, kOwnerFile, 0);
    close(dir_fd);
    rmdir(pattern.c_str());
    return failed;
  }
  return std::unique_ptr<TierDirectory>(new TierDirectory(std::move(pattern), dir_fd, lock_fd));
}

Result<int> TierDirectory::create_file(const std::string& name, std::size_t bytes) {
  const std::string path = file_path(name);
  const int fd = openat(dir_fd_, name.c_str(),
                        O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EINVAL) {
      return io_error("open " + path + " with O_DIRECT: the file system does not support it (" +
                      errno_text(err) + ")");
    }
    return io_failure("create " + path, err);
  }
  files_.push_back(name);
  fds_.push_back(fd);
  // Checked first so that a reservation the disk cannot hold never fills it on the way to
  // failing (fallocate may allocate much of the request before it gives up).
  struct statvfs fs {};
  if (fstatvfs(fd, &fs) == 0 && bytes > std::size_t{fs.f_bavail} * fs.f_frsize) {
    return out_of_memory("reserving " + std::to_string(bytes) + " bytes for " + path +
                         " (fallocate): the file system has " +
                         std::to_string(std::size_t{fs.f_bavail} * fs.f_frsize) + " bytes free");
  }
  if (bytes > 0 && fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    if (err == ENOSPC) {
      return out_of_memory("reserving " + std::to_string(bytes) + " bytes for " + path +
                           " (fallocate): no space left on the device");
    }
    return io_failure("fallocate of " + std::to_string(bytes) + " bytes for " + path, err);
  }
  return fd;
}

Status TierDirectory::check_present() const {
  struct stat now {};
  if (stat(path_.c_str(), &now) != 0 || now.st_dev != device_id_ || now.st_ino != inode_) {
    return not_found("NVMe tier directory " + path_ + " was removed or replaced while in use");
  }
  return ok_status();
}

}  // namespace ebb
