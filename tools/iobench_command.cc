// `ebb iobench`: sequential write, then read, bandwidth through the NVMe tier (io_uring,
// O_DIRECT, registered buffers, CRC32C per block unless --no-checksum), at a given block size
// and queue depth, to set against fio on the same directory (tools/iobench_vs_fio.sh runs both).
//
// As fio does, the blocks are made in the staging buffers themselves: each is stamped with its
// offset (checked when read back) rather than copied from a source. --copy adds the copy from
// and to a host buffer of up to 64 MiB, as a swap from host memory pays on the cpu.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "offload/nvme_tier.h"
#include "tools/commands.h"

namespace ebb::cli {
namespace {

struct IobenchArgs {
  std::string dir;
  std::string size = "1GiB";
  std::string block = "1MiB";
  unsigned queue_depth = 32;
  bool read_only = false;
  bool write_only = false;
  bool no_checksum = false;
  bool copy = false;
  bool json = false;
};

double gbps(std::size_t bytes, std::chrono::steady_clock::duration d) {
  const double s = std::chrono::duration<double>(d).count();
  return s > 0 ? static_cast<double>(bytes) / s / 1e9 : 0;
}

int run_iobench(const IobenchArgs& args) {
  Result<std::size_t> bytes = parse_byte_size(args.size, "--size");
  if (!bytes.ok()) return report_error(bytes.status());
  Result<std::size_t> block = parse_byte_size(args.block, "--bs");
  if (!block.ok()) return report_error(block.status());
  if (args.read_only && args.write_only) {
    return report_error(invalid_argument("--read and --write exclude each other"));
  }
  Result<std::unique_ptr<NvmeTier>> tier = NvmeTier::create({.directories = {args.dir},
                                                             .capacity_bytes = *bytes,
                                                             .block_bytes = *block,
                                                             .queue_depth = args.queue_depth,
                                                             .checksums = !args.no_checksum});
  if (!tier.ok()) return report_error(tier.status());

  // --copy: a whole number of blocks, so that no block straddles the end of the buffer.
  const std::size_t host_bytes =
      args.copy ? std::max(*block, std::min(*bytes, 64 * kMiB) / *block * *block) : 0;
  std::vector<std::byte> host(host_bytes);
  for (std::size_t i = 0; i < host_bytes; ++i) host[i] = static_cast<std::byte>(i * 131 + 7);
  std::size_t misplaced_blocks = 0;
  auto fill = [&](std::size_t offset, std::span<std::byte> out) {
    if (args.copy) {
      std::memcpy(out.data(), host.data() + offset % host_bytes, out.size());
    } else {
      std::memcpy(out.data(), &offset, std::min(out.size(), sizeof offset));
    }
    return ok_status();
  };
  auto drain = [&](std::size_t offset, std::span<const std::byte> in) {
    if (args.copy) {
      std::memcpy(host.data() + offset % host_bytes, in.data(), in.size());
    } else {
      std::size_t stamp = 0;
      std::memcpy(&stamp, in.data(), std::min(in.size(), sizeof stamp));
      if (in.size() >= sizeof stamp && stamp != offset) ++misplaced_blocks;
    }
    return ok_status();
  };

  auto start = std::chrono::steady_clock::now();
  Result<ExtentId> extent = (*tier)->write("iobench", *bytes, fill);
  const auto write_time = std::chrono::steady_clock::now() - start;
  if (!extent.ok()) return report_error(extent.status());
  double write_gbps = args.read_only ? 0 : gbps(*bytes, write_time);
  double read_gbps = 0;
  if (!args.write_only) {
    start = std::chrono::steady_clock::now();
    if (Status s = (*tier)->read(*extent, drain); !s.ok()) return report_error(s);
    read_gbps = gbps(*bytes, std::chrono::steady_clock::now() - start);
    if (misplaced_blocks > 0) {
      return report_error(data_loss("iobench: " + std::to_string(misplaced_blocks) +
                                    " blocks read back carry another block's stamp"));
    }
  }
  if (args.json) {
    nlohmann::json out = {{"bytes", *bytes},
                          {"block_bytes", *block},
                          {"queue_depth", args.queue_depth},
                          {"checksums", !args.no_checksum},
                          {"copy", args.copy}};
    if (!args.read_only) out["write_gbps"] = write_gbps;
    if (!args.write_only) out["read_gbps"] = read_gbps;
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("ebb iobench: %s in %s, block %s, queue depth %u, checksums %s, copy %s\n",
                format_bytes(*bytes).c_str(), (*tier)->directories()[0].c_str(),
                format_bytes(*block).c_str(), args.queue_depth, args.no_checksum ? "off" : "on",
                args.copy ? "on" : "off");
    if (!args.read_only) std::printf("write: %.3f GB/s\n", write_gbps);
    if (!args.write_only) std::printf("read:  %.3f GB/s\n", read_gbps);
  }
  return 0;
}

}  // namespace

Command add_iobench_command(CLI::App& parent) {
  auto args = std::make_shared<IobenchArgs>();
  CLI::App* app = parent.add_subcommand(
      "iobench", "sequential write then read bandwidth through the NVMe tier (compare with fio)");
  app->add_option("--dir", args->dir, "directory for the tier's files (a private one inside)")
      ->required();
  app->add_option("--size", args->size, "bytes to write and read (e.g. 1GiB)")
      ->capture_default_str();
  app->add_option("--bs", args->block, "block size: the request size (a multiple of 4 KiB)")
      ->capture_default_str();
  app->add_option("--qd", args->queue_depth, "queue depth: requests in flight")
      ->capture_default_str();
  app->add_flag("--read", args->read_only, "report the read only (the write is still done)");
  app->add_flag("--write", args->write_only, "write only");
  app->add_flag("--no-checksum", args->no_checksum, "no CRC32C per block");
  app->add_flag("--copy", args->copy, "copy each block from and to a host buffer (a host swap)");
  app->add_flag("--json", args->json, "print {\"write_gbps\":..,\"read_gbps\":..,...}");
  return {app, [args] { return run_iobench(*args); }};
}

}  // namespace ebb::cli
