// Readers of GPT-2's BPE vocabulary and merge list (OpenAI's encoder.json + vocab.bpe, or Hugging
// Face's vocab.json + merges.txt: same content), with every check a lying file needs.
#include "models/gpt2/bpe_files.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "core/error.h"

namespace lowrank::models::gpt2 {

namespace {

using nlohmann::json;

struct SymbolTables {
  std::array<uint32_t, 256> to_symbol{};
  std::array<int16_t, 324> to_byte{};  // every symbol is below U+0100 + 68 = U+0144
};

const SymbolTables& symbol_tables() {
  static const SymbolTables tables = [] {
    SymbolTables t;
    t.to_byte.fill(-1);
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t.to_symbol[b] = printable ? b : next_extra++;
      t.to_byte[t.to_symbol[b]] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return tables;
}

// Strict UTF-8 decoding of one code point at s[i] (advancing i); nullopt when the bytes there are
// not one (a stray continuation byte, a truncated or overlong sequence, a surrogate, > U+10FFFF).
std::optional<uint32_t> next_code_point(std::string_view s, size_t& i) {
  const size_t len = utf8_sequence_length(s, i);
  if (len == 0) return std::nullopt;
  static constexpr unsigned char kLeadMask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  uint32_t cp = static_cast<unsigned char>(s[i]) & kLeadMask[len];
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

// A token as the files write it ("Ġthe") -> its bytes (" the"); nullopt when a character is not
// one of the 256 byte symbols (or the text is not UTF-8).
std::optional<std::string> symbols_to_bytes(std::string_view symbols) {
  std::string out;
  out.reserve(symbols.size());
  for (size_t i = 0; i < symbols.size();) {
    auto cp = next_code_point(symbols, i);
    if (!cp) return std::nullopt;
    const int b = symbol_to_byte(*cp);
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

// Special tokens such as "<|endoftext|>" come from no merge.
bool is_special(std::string_view token) {
  return token.size() >= 4 && token.substr(0, 2) == "<|" && token.substr(token.size() - 2) == "|>";
}

// SAX reader of the vocabulary: one object, token -> non-negative integer id. Builds no JSON tree
// and keeps every entry, so that a token written twice is caught (nlohmann's tree keeps the last).
class VocabReader : public nlohmann::json_sax<json> {
 public:
  std::vector<std::pair<std::string, uint64_t>> entries;
  std::string error;

  bool null() override { return bad_value("null"); }
  bool boolean(bool) override { return bad_value("a boolean"); }
  bool number_integer(number_integer_t v) override {
    if (v < 0) return bad_value(std::to_string(v));
    return number_unsigned(static_cast<uint64_t>(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (depth_ != 1 || !pending_key_) return bad_value(std::to_string(v));
    entries.emplace_back(std::move(*pending_key_), v);
    pending_key_.reset();
    return true;
  }
  bool number_float(number_float_t, const string_t& text) override { return bad_value(text); }
  bool string(string_t& v) override { return bad_value("\"" + v + "\""); }
  bool binary(binary_t&) override { return bad_value("binary data"); }
  bool start_object(std::size_t) override {
    if (depth_ == 0) return ++depth_, true;
    return bad_value("an object");
  }
  bool key(string_t& k) override {
    pending_key_ = k;
    return true;
  }
  bool end_object() override { return --depth_, true; }
  bool start_array(std::size_t) override { return bad_value("an array"); }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(detail::format("not valid JSON ({})", e.what()));
  }

 private:
  bool bad_value(const std::string& what) {
    if (depth_ == 0) return fail(detail::format("expected a JSON object of token -> id, found {}", what));
    return fail(detail::format("the token \"{}\" has the id {}; ids must be non-negative integers",
                               pending_key_.value_or("?"), what));
  }
  bool fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  }
  int depth_ = 0;
  std::optional<std::string> pending_key_;
};

std::string read_whole_file(const std::string& path, const char* what) {
  std::error_code ec;
  LR_CHECK(!std::filesystem::is_directory(path, ec), "gpt2 tokenizer: the {} {} is a folder, not a file", what, path);
  std::ifstream in(path, std::ios::binary);
  LR_CHECK(in.good(), "gpt2 tokenizer: cannot open the {} {}: {}", what, path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  LR_CHECK(!in.bad(), "gpt2 tokenizer: cannot read the {} {}", what, path);
  return ss.str();
}

std::string printable(std::string_view s) {
  constexpr size_t kMax = 60;
  std::string out(s.substr(0, kMax));
  if (s.size() > kMax) out += "...";
  return out;
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = at(i);
  if (b0 < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte, which rules out overlongs etc.
  if (b0 >= 0xC2 && b0 <= 0xDF)
    len = 2;
  else if (b0 == 0xE0)
    len = 3, lo = 0xA0;
  else if (b0 == 0xED)
    len = 3, hi = 0x9F;  // no UTF-16 surrogates
  else if (b0 >= 0xE1 && b0 <= 0xEF)
    len = 3;
  else if (b0 == 0xF0)
    len = 4, lo = 0x90;
  else if (b0 == 0xF4)
    len = 4, hi = 0x8F;  // nothing above U+10FFFF
  else if (b0 >= 0xF1 && b0 <= 0xF3)
    len = 4;
  else
    return 0;
  if (s.size() - i < len) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k)
    if ((at(i + k) & 0xC0) != 0x80) return 0;
  return len;
}

uint32_t byte_to_symbol(uint8_t byte) {
  return symbol_tables().to_symbol[byte];
}

int symbol_to_byte(uint32_t code_point) {
  const auto& t = symbol_tables().to_byte;
  return code_point < t.size() ? t[code_point] : -1;
}

BpeFiles parse_bpe_files(std::string_view vocab_json, std::string_view merges_text, const std::string& vocab_name,
                         const std::string& merges_name) {
  BpeFiles files;

  // ---- vocabulary
  VocabReader reader;
  const bool parsed = json::sax_parse(vocab_json, &reader, json::input_format_t::json, /*strict=*/true);
  LR_CHECK(parsed && reader.error.empty(), "gpt2 tokenizer: vocabulary {}: {}", vocab_name,
           reader.error.empty() ? std::string("not valid JSON") : reader.error);
  const size_t n = reader.entries.size();
  LR_CHECK(n >= 257,
           "gpt2 tokenizer: vocabulary {}: {} tokens; a byte-level BPE vocabulary has the 256 bytes "
           "and <|endoftext|> at least",
           vocab_name, n);
  LR_CHECK(n <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
           "gpt2 tokenizer: vocabulary {}: too many "
           "tokens ({})",
           vocab_name, n);
  files.tokens.assign(n, {});
  std::vector<const std::string*> owner(n, nullptr);  // the symbol spelling, for messages
  TokenIds& id_of = files.ids;
  id_of.reserve(n);
  for (auto& [symbols, id] : reader.entries) {
    LR_CHECK(id < n,
             "gpt2 tokenizer: vocabulary {}: the token \"{}\" has the id {}, but {} tokens must have the "
             "ids 0..{}",
             vocab_name, printable(symbols), id, n, n - 1);
    auto bytes = symbols_to_bytes(symbols);
    LR_CHECK(bytes && !bytes->empty(),
             "gpt2 tokenizer: vocabulary {}: the token \"{}\" (id {}) is not written in "
             "GPT-2's byte symbols",
             vocab_name, printable(symbols), id);
    // Symbols and bytes correspond one to one, so equal bytes mean the same token written twice.
    auto [it, fresh] = id_of.emplace(*bytes, static_cast<int32_t>(id));
    LR_CHECK(fresh, "gpt2 tokenizer: vocabulary {}: the token \"{}\" is listed twice", vocab_name, printable(symbols));
    LR_CHECK(owner[id] == nullptr, "gpt2 tokenizer: vocabulary {}: the tokens \"{}\" and \"{}\" both have the id {}",
             vocab_name, printable(*owner[id]), printable(symbols), id);
    owner[id] = &symbols;
    files.tokens[id] = std::move(*bytes);
  }
  files.byte_ids.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    auto it = id_of.find(std::string(1, static_cast<char>(b)));
    LR_CHECK(it != id_of.end(), "gpt2 tokenizer: vocabulary {}: no token for the byte 0x{}{} (every byte needs one)",
             vocab_name, "0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 15]);
    files.byte_ids[static_cast<size_t>(b)] = it->second;
  }
  auto eot = id_of.find("<|endoftext|>");
  LR_CHECK(eot != id_of.end(), "gpt2 tokenizer: vocabulary {}: no <|endoftext|> token", vocab_name);
  files.eot_id = eot->second;

  // ---- merges
  std::vector<char> made(n, 0);
  std::unordered_map<uint64_t, size_t> line_of_pair;
  line_of_pair.reserve(n);
  size_t line_no = 0, pos = 0, first_blank_line = 0;
  while (pos < merges_text.size()) {
    size_t end = merges_text.find('\n', pos);
    if (end == std::string_view::npos) end = merges_text.size();
    std::string_view line = merges_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && line.substr(0, 8) == "#version") continue;
    if (line.empty()) {  // allowed at the end only
      if (first_blank_line == 0) first_blank_line = line_no;
      continue;
    }
    LR_CHECK(first_blank_line == 0, "gpt2 tokenizer: merges {}:{}: an empty line amid the merges", merges_name,
             first_blank_line);
    // Two tokens separated by whitespace (the files use one space; symbols never contain ASCII spaces).
    std::vector<std::string_view> parts;
    for (size_t i = 0; i < line.size();) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
      if (j > i) parts.push_back(line.substr(i, j - i));
      i = j;
    }
    LR_CHECK(parts.size() == 2, "gpt2 tokenizer: merges {}:{}: expected two tokens separated by a space, found \"{}\"",
             merges_name, line_no, printable(line));
    int32_t ids[3];
    std::string merged_bytes;
    for (int k = 0; k < 2; ++k) {
      auto bytes = symbols_to_bytes(parts[static_cast<size_t>(k)]);
      LR_CHECK(bytes.has_value(), "gpt2 tokenizer: merges {}:{}: \"{}\" is not written in GPT-2's byte symbols",
               merges_name, line_no, printable(parts[static_cast<size_t>(k)]));
      auto it = id_of.find(*bytes);
      LR_CHECK(it != id_of.end(),
               "gpt2 tokenizer: merges {}:{}: the merge \"{}\" names \"{}\", which is not in the "
               "vocabulary {}",
               merges_name, line_no, printable(line), printable(parts[static_cast<size_t>(k)]), vocab_name);
      ids[k] = it->second;
      merged_bytes += *bytes;
    }
    auto it = id_of.find(merged_bytes);
    LR_CHECK(it != id_of.end(),
             "gpt2 tokenizer: merges {}:{}: the merge \"{}\" makes \"{}{}\", which is not in the "
             "vocabulary {}",
             merges_name, line_no, printable(line), printable(parts[0]), printable(parts[1]), vocab_name);
    ids[2] = it->second;
    const uint64_t key = (static_cast<uint64_t>(ids[0]) << 32) | static_cast<uint32_t>(ids[1]);
    auto [prev, fresh] = line_of_pair.emplace(key, line_no);
    LR_CHECK(fresh, "gpt2 tokenizer: merges {}:{}: the merge \"{}\" repeats line {}", merges_name, line_no,
             printable(line), prev->second);
    files.merges.push_back({ids[0], ids[1], ids[2]});
    made[static_cast<size_t>(ids[2])] = 1;
  }
  // A truncated merge list leaves tokens that nothing makes: the tokenizer could never produce them.
  for (size_t id = 0; id < n; ++id) {
    const std::string& t = files.tokens[id];
    if (made[id] || t.size() == 1 || is_special(t)) continue;
    LR_FAIL(
        "gpt2 tokenizer: merges {}: no merge makes the token \"{}\" (id {}) of the vocabulary {}; the merge list "
        "({} merges) looks truncated or belongs to another vocabulary",
        merges_name, printable(*owner[id]), id, vocab_name, files.merges.size());
  }
  return files;
}

BpeFiles read_bpe_files(const std::string& vocab_json_path, const std::string& merges_path) {
  const std::string vocab = read_whole_file(vocab_json_path, "vocabulary");
  const std::string merges = read_whole_file(merges_path, "merge list");
  return parse_bpe_files(vocab, merges, vocab_json_path, merges_path);
}

}  // namespace lowrank::models::gpt2
