// TierDirectory: the private directory that holds one NVMe tier's files inside a directory the
// user named (a drive's mount point, say), and the cleanup of directories that killed runs left.
//
// create() makes base/ebb-tier-XXXXXX (mode 0700, mkdtemp) with a file `owner` in it (0600)
// that holds the pid and is flock'ed for the life of the TierDirectory: the kernel drops the
// lock when the process dies however it dies, so a directory whose lock can be taken belongs to
// a dead run. Before creating its own, create() removes such leftovers (saying so on stderr)
// and leaves alone those whose owner still runs; a directory is never reused. Files are created
// with O_EXCL | O_NOFOLLOW, mode 0600, and space is reserved up front with fallocate, so a full
// disk fails here and not in the middle of a step.
//
// Ownership: owns the directory, the files it created and their descriptors; the destructor
// closes and removes them all (also after an error, and without complaint if someone removed
// them first).
//
// Thread safety: create_file() is not thread-safe (the tier calls it while being built);
// check_present() and the accessors are.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kernels/status.h"

namespace ebb {

// What clean_leftovers() found in a base directory.
struct TierLeftovers {
  std::vector<std::string> removed;  // directories of dead runs, removed
  std::vector<std::string> in_use;   // directories whose owner still runs (or has no owner file)
};

class TierDirectory {
 public:
  // Cleans leftovers in `base` (see clean_leftovers), then creates the private directory.
  // kNotFound when `base` does not exist; kIoError naming the path for other failures.
  static Result<std::unique_ptr<TierDirectory>> create(const std::string& base);
  ~TierDirectory();
  TierDirectory(const TierDirectory&) = delete;
  TierDirectory& operator=(const TierDirectory&) = delete;

  // Removes the ebb-tier-* directories in `base` whose owner lock can be taken (their run is
  // dead), printing one line per directory removed on stderr; lists those it left alone.
  static Result<TierLeftovers> clean_leftovers(const std::string& base);

  // Creates `name` in the directory for O_DIRECT reads and writes and reserves `bytes` for it
  // (fallocate). Returns the descriptor, which stays owned by the TierDirectory. kOutOfMemory
  // naming the file and the size when the disk is full; kIoError for other failures.
  Result<int> create_file(const std::string& name, std::size_t bytes);
  // The full path of a file created by create_file.
  std::string file_path(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }
  // kNotFound naming the directory when it was removed or replaced while in use.
  Status check_present() const;

 private:
  TierDirectory(std::string path, int dir_fd, int lock_fd);

  const std::string path_;
  const int dir_fd_;
  const int lock_fd_;
  // The directory's identity at creation, to tell it from one made in its place since.
  unsigned long device_id_ = 0;
  unsigned long inode_ = 0;
  std::vector<std::string> files_;  // created by create_file, removed by the destructor
  std::vector<int> fds_;            // their descriptors
};

}  // namespace ebb
