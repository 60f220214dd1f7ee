// The schema's file I/O. Writing a file so that readers see the old contents or the new, never
// a part: a temporary file beside the target, written, fsynced, renamed over it, and the
// directory fsynced. Used for profiles and plans; reading any of the schema's documents.
//
// Thread safety: a pure function of the file system.
#pragma once

#include <string>
#include <string_view>

#include "kernels/status.h"

namespace ebb {

// Writes `text` to `path` atomically, mode 0644. An I/O failure is kIoError naming the file
// (and the temporary one) and leaves neither the temporary file nor a partial `path` behind.
Status write_file_atomically(const std::string& path, std::string_view text);

// The whole file as text. kNotFound "cannot open <what> <path>" when it cannot be opened,
// kIoError "error reading <what> <path>" when reading fails.
Result<std::string> read_text_file(const std::string& path, std::string_view what);

// kIoError "<what>: <the OS's text for err>".
Status os_error(const std::string& what, int err);

}  // namespace ebb
