// Bounded JSON parsing and message excerpts (see json_util.h for why).
#include "core/io/json_util.h"

#include "core/error.h"

namespace lowrank::io {

void check_json_depth(std::string_view text, const std::string& what, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character cannot end the string
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      LR_CHECK(++depth <= max_depth, "{}: JSON nested deeper than {} levels (at byte {})", what, max_depth, i);
    } else if (c == ']' || c == '}') {
      --depth;  // unbalanced closers are the parser's to report
    }
  }
}

nlohmann::json parse_json(std::string_view text, const std::string& what, const nlohmann::json::parser_callback_t& cb,
                          int max_depth) {
  check_json_depth(text, what, max_depth);
  try {
    return nlohmann::json::parse(text, cb);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann quotes the last token read, which may be a whole (huge) string.
    LR_FAIL("{}: not valid JSON ({})", what, excerpt(std::string_view(e.what()), 200));
  }
}

std::string excerpt(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
  return std::string(s.substr(0, cut)) + detail::format("... ({} bytes)", s.size());
}

std::string json_excerpt(const nlohmann::json& v, size_t max) {
  // A value that passed check_json_depth dumps without deep recursion; big arrays still cost their
  // size once, which the caller has already paid to parse.
  return excerpt(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), max);
}

}  // namespace lowrank::io
