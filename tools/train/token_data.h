// TokenData: the token stream the reference trainer learns from, and the batches it cuts.
//
// Two sources:
// - synthetic: a deterministic stream from a seed that a model can learn: each token is, with
//   probability 7/8, a fixed function of the one before it (a seeded table), and otherwise a
//   uniformly random token; the best achievable loss (about 0.13 + ln(vocab) / 8) is far below
//   ln(vocab).
// - a token file in llm.c's format: a header of 256 little-endian int32 (magic 20240520,
//   version 1, token count, the rest unused) followed by that many uint16 tokens.
//
// Batches follow llm.c's DataLoader: step s reads batch*seq + 1 consecutive tokens starting at
// s * batch * seq (wrapping around the stream), inputs are the first batch*seq, targets the same
// shifted by one.
//
// Thread safety: immutable after creation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/status.h"

namespace ebb::train {

inline constexpr std::int32_t kTokenFileMagic = 20240520;
inline constexpr std::int32_t kTokenFileVersion = 1;
inline constexpr std::size_t kTokenFileHeaderInts = 256;

class TokenData {
 public:
  // A synthetic stream of `tokens` tokens over [0, vocab). REQUIRES: vocab >= 1, tokens >= 1.
  static TokenData synthetic(int vocab, std::int64_t tokens, std::uint64_t seed);
  // Reads a token file. Errors name the file and what is wrong: missing or unreadable, wrong
  // magic or version, a header count that disagrees with the file's length (truncated or
  // trailing bytes), fewer than min_tokens tokens, or a token id >= vocab (with its position).
  static Result<TokenData> from_file(const std::string& path, int vocab, std::int64_t min_tokens);
  // The same from a token file's bytes in memory; `path` names the file in messages.
  static Result<TokenData> from_bytes(std::string_view bytes, const std::string& path, int vocab,
                                      std::int64_t min_tokens);
  // Writes `tokens` in the token file format (for tests and tools).
  static Status write_file(const std::string& path, const std::vector<std::uint16_t>& tokens);

  // Fills inputs and targets (batch*seq each) for `step`.
  void batch(std::int64_t step, int batch, int seq, std::vector<std::int32_t>& inputs,
             std::vector<std::int32_t>& targets) const;

  std::int64_t size() const { return static_cast<std::int64_t>(tokens_.size()); }
  const std::string& source() const { return source_; }

 private:
  TokenData(std::vector<std::uint16_t> tokens, std::string source)
      : tokens_(std::move(tokens)), source_(std::move(source)) {}

  std::vector<std::uint16_t> tokens_;
  std::string source_;  // "synthetic(seed=..)" or the file path
};

}  // namespace ebb::train
