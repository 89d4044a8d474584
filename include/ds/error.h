// The exception hierarchy. Messages name the op, node or placeholder, what was
// expected and what was given, so a user can act on them.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ds {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ShapeError : public Error { using Error::Error; };        // incompatible shapes
class TypeError : public Error { using Error::Error; };         // wrong dtype / attribute kind
class ValueError : public Error { using Error::Error; };        // bad argument value
class NotFoundError : public Error { using Error::Error; };     // unknown op, target, feed, file
class UnavailableError : public Error { using Error::Error; };  // built without X / no device
class IOError : public Error { using Error::Error; };           // unreadable or malformed file
class OutOfMemoryError : public Error { using Error::Error; };

namespace detail {
template <typename... Args> std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// DS_CHECK(cond, ErrorType, message parts...)
#define DS_CHECK(cond, Kind, ...) \
  do {                            \
    if (!(cond)) throw ::ds::Kind(::ds::detail::cat(__VA_ARGS__)); \
  } while (0)

}  // namespace ds
