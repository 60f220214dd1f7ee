#include "tools/train/token_data.h"

#include <array>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>
#include <utility>

#include "tools/train/rng.h"

namespace ebb::train {

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
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("token file " + path + ": cannot open (" + std::strerror(errno) + ")");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return data_loss("token file " + path + ": cannot read it");
  return from_bytes(bytes, path, vocab, min_tokens);
}

Result<TokenData> TokenData::from_bytes(std::string_view bytes, const std::string& path, int vocab,
                                        std::int64_t min_tokens) {
  const auto file_bytes = static_cast<std::int64_t>(bytes.size());
  constexpr std::int64_t kHeaderBytes = kTokenFileHeaderInts * sizeof(std::int32_t);
  if (file_bytes < kHeaderBytes) {
    return invalid_argument("token file " + path + ": " + std::to_string(file_bytes) +
                            " bytes, shorter than the 1024-byte header (truncated?)");
  }
  std::array<std::int32_t, kTokenFileHeaderInts> header{};
  std::memcpy(header.data(), bytes.data(), kHeaderBytes);
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
  const std::int64_t expected = kHeaderBytes + count * 2;
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
  std::vector<std::uint16_t> tokens(static_cast<std::size_t>(count));
  std::memcpy(tokens.data(), bytes.data() + kHeaderBytes, static_cast<std::size_t>(count) * 2);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] >= vocab) {
      return invalid_argument("token file " + path + ": token " + std::to_string(tokens[i]) +
                              " at position " + std::to_string(i) + " is outside --vocab " +
                              std::to_string(vocab));
    }
  }
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
