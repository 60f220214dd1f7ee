// Weights files: a model's fp32 weights by parameter name, in one file that one process loads
// (`ebb checkpoint export` writes one from any checkpoint; `ebb train --init-from` reads it).
//
// The layout is safetensors' (https://github.com/huggingface/safetensors), so that other tools
// load it too:
//   bytes 0-7   H, the header's length in bytes, an unsigned 64-bit little-endian integer
//   bytes 8-8+H the header: a UTF-8 JSON object, padded with spaces to a multiple of 8 bytes;
//               per tensor, in the model's parameter order,
//                 "<name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [b, e]}
//               and "__metadata__": string values only, as safetensors requires:
//                 "format": "ebb-weights", "version": "1", and per tensor
//                 "crc32c.<name>": its data's CRC32C (offload/crc32c.h), "0x%08x";
//               plus what the writer adds (the checkpoint's step and model fingerprint).
//   the data    every tensor's values, fp32 little-endian, row-major, laid end to end in
//               header order: tensor i is bytes [b, e) after the header.
// A file is written whole or not at all (write_file_atomically: a temporary file, renamed).
//
// Thread safety: pure functions of the file system.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/status.h"

namespace ebb {

struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;  // shape's element count
};

struct WeightsFile {
  std::vector<NamedTensor> tensors;  // in file order
  // Extra "__metadata__" entries (the format's own are added on write and left out on read).
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Writes `weights` to `path` atomically. kInvalidArgument for an empty or repeated name, or
// values that do not match a shape; kIoError naming the file when it cannot be written (nothing
// is left behind then).
Status write_weights_file(const std::string& path, const WeightsFile& weights);

// Reads and checks a weights file: its header, every tensor's offsets and shape, and every
// tensor's CRC32C. kNotFound when it cannot be opened; kInvalidArgument when it is not an
// ebb-weights file; kDataLoss naming the file and the tensor when the header or data is
// damaged (a truncated file, a checksum that differs).
Result<WeightsFile> read_weights_file(const std::string& path);
// The same from the file's bytes in memory; `path` names the file in messages.
Result<WeightsFile> parse_weights_file(std::string_view file, const std::string& path);

}  // namespace ebb
