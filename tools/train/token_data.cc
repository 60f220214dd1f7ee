#include "tools/train/token_data.h"

#include <array>
#include <cstring>
#include <fstream>
#include <string_view>
#include <utility>

#include "tools/train/rng.h"

namespace ebb::train {

namespace {

constexpr std::int64_t kTokenFileHeaderBytes = kTokenFileHeaderInts * sizeof(std::int32_t);

Status check_token_file_length(std::int64_t file_bytes, const std::string& path) {
  if (file_bytes < kTokenFileHeaderBytes) {
    return invalid_argument("token file " + path + ": " + std::to_string(file_bytes) +
                            " bytes, shorter than the 1024-byte header (truncated?)");
  }
  return ok_status();
}

// The token count the header promises, checked against the file's length and min_tokens.
// REQUIRES: `header_bytes` holds kTokenFileHeaderBytes bytes.
Result<std::int64_t> token_count_of(const char* header_bytes, std::int64_t file_bytes,
                                    const std::string& path, std::int64_t min_tokens) {
  std::array<std::int32_t, kTokenFileHeaderInts> header{};
  std::memcpy(header.data(), header_bytes, kTokenFileHeaderBytes);
  if (header[0] != kTokenFileMagic) {
    return invalid_argument("token file " + path + ": magic " + std::to_string(header[0]) +
                            ", expected " + std::to_string(kTokenFileMagic) +
                            " (not an llm.c token file)");
  }
  if (header[1] != kTokenFileVersion) {
    return invalid_argument("token file " + path + ": version " + std::to_string(header[1]) +
                            ", expected " + std::to_string(kTokenFileVersion));
  }
  const std::int64_t count = header[2];
  const std::int64_t expected = kTokenFileHeaderBytes + count * 2;
  if (count < 0 || file_bytes != expected) {
    return invalid_argument("token file " + path + ": header says " + std::to_string(count) +
                            " tokens (" + std::to_string(expected) + " bytes) but the file has " +
                            std::to_string(file_bytes) + " bytes" +
                            (file_bytes < expected ? " (truncated)" : " (trailing bytes)"));
  }
  if (count < min_tokens) {
    return invalid_argument("token file " + path + ": " + std::to_string(count) +
                            " tokens, fewer than the " + std::to_string(min_tokens) +
                            " one step needs (batch * seq + 1)");
  }
  return count;
}

Status check_token_ids(const std::vector<std::uint16_t>& tokens, int vocab,
                       const std::string& path) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] >= vocab) {
      return invalid_argument("token file " + path + ": token " + std::to_string(tokens[i]) +
                              " at position " + std::to_string(i) + " is outside --vocab " +
                              std::to_string(vocab));
    }
  }
  return ok_status();
}

}  // namespace

TokenData TokenData::synthetic(int vocab, std::int64_t tokens, std::uint64_t seed) {
  SplitMix64 rng(seed ^ 0x746f6b656e73ULL);  // "tokens": a stream apart from the weights'
  const auto v = static_cast<std::uint64_t>(vocab);
  // The rule: next = successor[previous], a seeded table; a model learns it within tens of steps.
  std::vector<std::uint16_t> successor(v);
  for (auto& t : successor) t = static_cast<std::uint16_t>(rng.next() % v);
  std::vector<std::uint16_t> out(static_cast<std::size_t>(tokens));
  out[0] = static_cast<std::uint16_t>(rng.next() % v);
  for (std::size_t i = 1; i < out.size(); ++i) {
    const std::uint64_t r = rng.next();
    out[i] = (r & 7) == 0 ? static_cast<std::uint16_t>((r >> 3) % v) : successor[out[i - 1]];
  }
  return TokenData(std::move(out), "synthetic(seed=" + std::to_string(seed) + ")");
}

Result<TokenData> TokenData::from_file(const std::string& path, int vocab,
                                       std::int64_t min_tokens) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return not_found("token file " + path + ": cannot open (" + std::strerror(errno) + ")");
  const auto file_bytes = static_cast<std::int64_t>(in.tellg());
  in.seekg(0);
  EBB_RETURN_IF_ERROR(check_token_file_length(file_bytes, path));
  std::array<char, kTokenFileHeaderBytes> header{};
  if (!in.read(header.data(), kTokenFileHeaderBytes)) {
    return data_loss("token file " + path + ": cannot read the header");
  }
  EBB_ASSIGN_OR_RETURN(const std::int64_t count,
                       token_count_of(header.data(), file_bytes, path, min_tokens));
  // Read in place rather than through from_bytes: a token file can be gigabytes.
  std::vector<std::uint16_t> tokens(static_cast<std::size_t>(count));
  if (!in.read(reinterpret_cast<char*>(tokens.data()), count * 2)) {
    return data_loss("token file " + path + ": cannot read " + std::to_string(count) + " tokens");
  }
  EBB_RETURN_IF_ERROR(check_token_ids(tokens, vocab, path));
  return TokenData(std::move(tokens), path);
}

Result<TokenData> TokenData::from_bytes(std::string_view bytes, const std::string& path, int vocab,
                                        std::int64_t min_tokens) {
  const auto file_bytes = static_cast<std::int64_t>(bytes.size());
  EBB_RETURN_IF_ERROR(check_token_file_length(file_bytes, path));
  EBB_ASSIGN_OR_RETURN(const std::int64_t count,
                       token_count_of(bytes.data(), file_bytes, path, min_tokens));
  std::vector<std::uint16_t> tokens(static_cast<std::size_t>(count));
  std::memcpy(tokens.data(), bytes.data() + kTokenFileHeaderBytes,
              static_cast<std::size_t>(count) * 2);
  EBB_RETURN_IF_ERROR(check_token_ids(tokens, vocab, path));
  return TokenData(std::move(tokens), path);
}

Status TokenData::write_file(const std::string& path, const std::vector<std::uint16_t>& tokens) {
  std::array<std::int32_t, kTokenFileHeaderInts> header{};
  header[0] = kTokenFileMagic;
  header[1] = kTokenFileVersion;
  header[2] = static_cast<std::int32_t>(tokens.size());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(header.data()), sizeof(header));
  out.write(reinterpret_cast<const char*>(tokens.data()),
            static_cast<std::streamsize>(tokens.size() * 2));
  out.close();
  if (!out) return io_error("token file " + path + ": write failed");
  return ok_status();
}

void TokenData::batch(std::int64_t step, int batch, int seq, std::vector<std::int32_t>& inputs,
                      std::vector<std::int32_t>& targets) const {
  const std::int64_t n = static_cast<std::int64_t>(batch) * seq;
  const auto size = static_cast<std::int64_t>(tokens_.size());
  inputs.resize(static_cast<std::size_t>(n));
  targets.resize(static_cast<std::size_t>(n));
  const std::int64_t start = (step * n) % size;
  for (std::int64_t i = 0; i < n; ++i) {
    inputs[i] = tokens_[(start + i) % size];
    targets[i] = tokens_[(start + i + 1) % size];
  }
}

}  // namespace ebb::train
