// JSON reading shared by every parser of user files (safetensors headers, configs, tokenizer files,
// token lists): a nesting bound checked before nlohmann builds anything, and excerpts of values that
// are short enough to put in an error message.
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace lowrank::io {

// Deeper than any config, header or vocabulary needs; nlohmann's dump() and the value's
// destruction recurse once per level, so ~100,000 levels overflow the stack.
inline constexpr int kMaxJsonDepth = 64;
// The most characters of user input an error message repeats.
inline constexpr size_t kMaxExcerpt = 80;

// Throws lowrank::Error "<what>: ..." when `text` nests arrays/objects deeper than `max_depth`
// (strings are skipped, so brackets inside them do not count). Linear, no allocation.
void check_json_depth(std::string_view text, const std::string& what, int max_depth = kMaxJsonDepth);

// check_json_depth, then nlohmann's parse; a syntax error becomes "<what>: not valid JSON (...)"
// with nlohmann's message shortened. `cb` is nlohmann's parser callback (may be null).
nlohmann::json parse_json(std::string_view text, const std::string& what,
                          const nlohmann::json::parser_callback_t& cb = nullptr, int max_depth = kMaxJsonDepth);

// `s` cut to `max` bytes (at a UTF-8 boundary) with "... (N bytes)" appended when it was longer.
std::string excerpt(std::string_view s, size_t max = kMaxExcerpt);
// A JSON value as compact text for a message: invalid UTF-8 replaced, cut as excerpt() does.
std::string json_excerpt(const nlohmann::json& v, size_t max = kMaxExcerpt);

}  // namespace lowrank::io
