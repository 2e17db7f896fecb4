// GPT-2's byte-level BPE files: the byte <-> symbol table, and the readers of the vocabulary
// (encoder.json / vocab.json) and merge list (vocab.bpe / merges.txt), which refuse a missing,
// truncated or lying file with one clear error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lowrank::models::gpt2 {

// GPT-2 writes every byte as one printable character so that the files are plain text: the
// printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves, and the
// other 68 bytes (controls, space, U+00A0, U+00AD) map in byte order to U+0100, U+0101, ...
// (so the space is U+0120 'Ġ' and the newline U+010A 'Ċ').
uint32_t byte_to_symbol(uint8_t byte);
// The inverse: the byte a symbol stands for, or -1 when the code point is no byte's symbol.
int symbol_to_byte(uint32_t code_point);

// The length of the strict UTF-8 sequence that starts at s[i] (1..4), or 0 when the bytes there are
// not one: a stray continuation byte, a truncated or overlong sequence, a surrogate, > U+10FFFF.
size_t utf8_sequence_length(std::string_view s, size_t i);

// One merge: the tokens `left` and `right`, adjacent, become `merged`. Its rank is its index in
// BpeFiles::merges (earlier merges win).
struct BpeMerge {
  int32_t left = 0, right = 0, merged = 0;
};

// Hashes std::string and std::string_view alike, so that lookups by view need no copy.
struct BytesHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenIds = std::unordered_map<std::string, int32_t, BytesHash, std::equal_to<>>;

// The content of a vocabulary + merges pair, in raw bytes (the symbols already decoded).
struct BpeFiles {
  std::vector<std::string> tokens;  // id -> the token's bytes; ids are exactly 0..size-1
  TokenIds ids;                     // the inverse
  std::vector<BpeMerge> merges;     // in rank order
  std::vector<int32_t> byte_ids;    // byte value -> the id of its one-byte token (256 entries)
  int32_t eot_id = -1;              // "<|endoftext|>"
};

// Parses the two files' contents; `vocab_name` and `merges_name` (the paths) only go into messages.
// Checks: the vocabulary is one JSON object of token -> id with no repeated token, ids are
// 0..N-1 without repeats, every token is written in byte symbols, all 256 one-byte tokens and
// "<|endoftext|>" are there; the merge list is an optional `#version` line and then lines of two
// tokens, each pair once, every token it names (and their concatenation) in the vocabulary, and
// it makes every token of the vocabulary that is neither a single byte nor a special `<|...|>`
// token (which is how a truncated merge list shows).
BpeFiles parse_bpe_files(std::string_view vocab_json, std::string_view merges_text, const std::string& vocab_name,
                         const std::string& merges_name);

// Reads and parses the two files; a missing or unreadable file is an error naming its path.
BpeFiles read_bpe_files(const std::string& vocab_json_path, const std::string& merges_path);

}  // namespace lowrank::models::gpt2
