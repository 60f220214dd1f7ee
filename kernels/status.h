// Status and Result: how every layer of ebb returns a failure that a caller can handle.
//
// A Status carries a code and a message that names what was wrong (the tensor, file, call or
// size involved). Result<T> is a value or a non-ok Status. A broken invariant is not a Status:
// it is EBB_CHECK, which prints the state and aborts.
//
// Thread safety: value types; distinct objects may be used from distinct threads.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace ebb {

enum class StatusCode {
  kOk,
  kInvalidArgument,     // the caller passed something wrong (a zero size, a foreign pointer)
  kOutOfMemory,         // a budget or a capacity would be passed
  kNotFound,            // a named thing does not exist (a file, a tensor)
  kFailedPrecondition,  // the call is not valid in the current state
  kIoError,             // the operating system reported an I/O failure
  kDataLoss,            // data read back is not what was written (short read, checksum)
  kUnavailable,         // a backend or device is not present on this machine
  kInternal,            // a backend call failed (a CUDA error, a failed mmap)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : rep_(code == StatusCode::kOk ? nullptr
                                     : std::make_unique<Rep>(Rep{code, std::move(message)})) {}
  Status(const Status& other) : rep_(other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr) {}
  Status& operator=(const Status& other) {
    if (this != &other) rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
    return *this;
  }
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  const std::string& message() const;
  // "OutOfMemory: <message>", or "OK".
  std::string to_string() const;

 private:
  // An OK status is one null pointer: the allocator's fast path returns many of them.
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;
};

inline Status ok_status() { return Status(); }
inline Status invalid_argument(std::string m) {
  return Status(StatusCode::kInvalidArgument, std::move(m));
}
inline Status out_of_memory(std::string m) {
  return Status(StatusCode::kOutOfMemory, std::move(m));
}
inline Status not_found(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status failed_precondition(std::string m) {
  return Status(StatusCode::kFailedPrecondition, std::move(m));
}
inline Status io_error(std::string m) { return Status(StatusCode::kIoError, std::move(m)); }
inline Status data_loss(std::string m) { return Status(StatusCode::kDataLoss, std::move(m)); }
inline Status unavailable(std::string m) { return Status(StatusCode::kUnavailable, std::move(m)); }
// A name as messages quote it: 'name'. (Not `quoted`: argument-dependent lookup would find
// std::quoted for a std::string wherever <iomanip> is included.)
inline std::string quote(std::string_view name) { return "'" + std::string(name) + "'"; }

inline Status internal_error(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }

// A value of type T, or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Status status)
      : status_(status.ok() ? internal_error("Result constructed from an OK status")
                            : std::move(status)) {}

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  // REQUIRES: ok().
  T& value() & { return checked(); }
  const T& value() const& { return const_cast<Result*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }
  T& operator*() & { return checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->checked(); }
  T* operator->() { return &checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->checked(); }

 private:
  T& checked() {
    if (!value_) {
      std::fprintf(stderr, "ebb: value() of a failed Result: %s\n", status_.to_string().c_str());
      std::abort();
    }
    return *value_;
  }

  std::optional<T> value_;
  Status status_;
};

// Prints the message and the failed condition, then aborts: for broken invariants only.
[[noreturn]] void check_failed(const char* file, int line, const char* condition,
                               const std::string& message);

}  // namespace ebb

#define EBB_CHECK(cond, message)                                            \
  do {                                                                      \
    if (!(cond)) ::ebb::check_failed(__FILE__, __LINE__, #cond, (message)); \
  } while (false)

#define EBB_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::ebb::Status ebb_status_ = (expr);        \
    if (!ebb_status_.ok()) return ebb_status_; \
  } while (false)

#define EBB_CONCAT_INNER(a, b) a##b
#define EBB_CONCAT(a, b) EBB_CONCAT_INNER(a, b)
#define EBB_ASSIGN_OR_RETURN(lhs, expr) \
  EBB_ASSIGN_OR_RETURN_IMPL(EBB_CONCAT(ebb_result_, __LINE__), lhs, expr)
#define EBB_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
