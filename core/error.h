// lowrank::Error and the LR_CHECK macro: every user-caused mistake becomes one clear message.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace lowrank {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void format_arg(std::ostream& os, const std::vector<int64_t>& v) {
  os << '[';
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << ']';
}
inline void format_arg(std::ostream& os, const std::vector<int>& v) {
  os << '[';
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << ']';
}
template <class T>
void format_arg(std::ostream& os, const T& v) {
  os << v;
}
inline void format_rest(std::ostream& os, std::string_view fmt) {
  os << fmt;
}
template <class T, class... Rest>
void format_rest(std::ostream& os, std::string_view fmt, const T& first, const Rest&... rest) {
  auto pos = fmt.find("{}");
  if (pos == std::string_view::npos) {
    os << fmt;
    return;
  }
  os << fmt.substr(0, pos);
  format_arg(os, first);
  format_rest(os, fmt.substr(pos + 2), rest...);
}
// "{}" placeholders filled in order (std::format is not in GCC 12).
template <class... Args>
std::string format(std::string_view fmt, const Args&... args) {
  std::ostringstream os;
  format_rest(os, fmt, args...);
  return os.str();
}
}  // namespace detail

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);

}  // namespace lowrank

// Always on, release builds too. The message names the op and the shapes; file:line is appended.
#define LR_CHECK(cond, ...)                                                               \
  do {                                                                                    \
    if (!(cond)) [[unlikely]]                                                             \
      ::lowrank::throw_error(__FILE__, __LINE__, ::lowrank::detail::format(__VA_ARGS__)); \
  } while (0)

#define LR_FAIL(...) ::lowrank::throw_error(__FILE__, __LINE__, ::lowrank::detail::format(__VA_ARGS__))
