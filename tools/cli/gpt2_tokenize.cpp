// `lowrank gpt2 tokenize [FILE]`: text (a file or stdin) to GPT-2 token ids, one per line or as one
// JSON array; with --decode, ids (one per line, whitespace-separated, or a JSON array) back to the
// raw bytes they stand for.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/io/json_util.h"
#include "tools/cli/gpt2_common.h"
#include "tools/train/gpt2.h"

namespace lowrank::cli::gpt2 {
namespace {

namespace mg = models::gpt2;

struct TokenizeFlags {
  std::string input = "-";
  std::string vocab;
  bool decode = false, json = false, special = false;
};

// The whole input in one string, without the extra copies of a stream buffer: a file is read at
// its size, stdin in blocks (a 50 MB text costs 50 MB, not several times that).
std::string read_input(const std::string& path) {
  std::string s;
  char block[1 << 16];
  if (path == "-") {
    size_t got = 0;
    while ((got = std::fread(block, 1, sizeof(block), stdin)) > 0) s.append(block, got);
    LR_CHECK(!std::ferror(stdin), "gpt2 tokenize: error while reading stdin");
    return s;
  }
  std::error_code ec;
  LR_CHECK(!std::filesystem::is_directory(path, ec), "gpt2 tokenize: {} is a folder, not a text file", path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  LR_CHECK(f != nullptr, "gpt2 tokenize: cannot read {}", path);
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec) s.reserve(static_cast<size_t>(size));
  size_t got = 0;
  while ((got = std::fread(block, 1, sizeof(block), f)) > 0) s.append(block, got);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  LR_CHECK(!failed, "gpt2 tokenize: error while reading {}", path);
  return s;
}

// Ids from a JSON array or from whitespace-separated integers; errors say where.
std::vector<int64_t> parse_ids(const std::string& text, const std::string& source, int64_t vocab) {
  std::vector<int64_t> ids;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    const nlohmann::json j = io::parse_json(text, "gpt2 tokenize: " + source + " is not a valid JSON array of ids");
    LR_CHECK(j.is_array(), "gpt2 tokenize: {} is not a JSON array of ids", source);
    for (size_t i = 0; i < j.size(); ++i) {
      LR_CHECK(j[i].is_number_integer(), "gpt2 tokenize: {}: element {} ({}) is not a whole number", source, i,
               io::json_excerpt(j[i]));
      const int64_t id = j[i].get<int64_t>();
      LR_CHECK(id >= 0 && id < vocab, "gpt2 tokenize: {}: element {} is id {}, outside the vocabulary [0, {})", source,
               i, id, vocab);
      ids.push_back(id);
    }
    return ids;
  }
  std::istringstream lines(text);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    std::istringstream words(line);
    std::string w;
    while (words >> w) {
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(w, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      LR_CHECK(used == w.size() && used > 0, "gpt2 tokenize: {} line {}: '{}' is not a token id", source, line_no,
               io::excerpt(w));
      LR_CHECK(id >= 0 && id < vocab, "gpt2 tokenize: {} line {}: id {} is outside the vocabulary [0, {})", source,
               line_no, id, vocab);
      ids.push_back(id);
    }
  }
  return ids;
}

}  // namespace

RunFn register_gpt2_tokenize(CLI::App& gpt2) {
  auto* sub = gpt2.add_subcommand("tokenize",
                                  "text to GPT-2 token ids (one per line, or --json), or --decode ids back to text");
  auto f = std::make_shared<TokenizeFlags>();
  sub->add_option("input", f->input, "text file, or ids with --decode ('-' or nothing: stdin)")->capture_default_str();
  sub->add_flag("--decode", f->decode, "read ids (one per line, or a JSON array) and write the raw bytes they encode");
  sub->add_flag("--json", f->json, "write the ids as one JSON array instead of one per line");
  sub->add_flag("--special", f->special, "encode each literal <|endoftext|> as the special id 50256");
  sub->add_option("--vocab", f->vocab,
                  "folder with encoder.json + vocab.bpe or vocab.json + merges.txt (default: $LOWRANK_GPT2_VOCAB, "
                  "else " +
                      mg::Tokenizer::default_dir() + ")");
  return [f]() {
    const std::string text = read_input(f->input);
    const mg::Tokenizer tok = train::load_gpt2_tokenizer(f->vocab, "gpt2 tokenize");
    const std::string source = f->input == "-" ? "stdin" : f->input;
    if (f->decode) {
      const std::string bytes = tok.decode(parse_ids(text, source, tok.vocab_size()));
      std::fwrite(bytes.data(), 1, bytes.size(), stdout);
      return kExitOk;
    }
    // The ids go out as they come (no array of all of them): "[1,2,3]" as nlohmann's dump writes
    // it, or one per line.
    std::string out;
    bool first = true;
    if (f->json) out += '[';
    tok.encode_to(text, f->special, [&](const int64_t* ids, size_t n) {
      for (size_t i = 0; i < n; ++i) {
        char digits[24];
        const auto end = std::to_chars(digits, digits + sizeof(digits), ids[i]).ptr;
        if (f->json && !first) out += ',';
        first = false;
        out.append(digits, end);
        if (!f->json) out += '\n';
      }
      if (out.size() >= (1 << 16)) std::fwrite(out.data(), 1, out.size(), stdout), out.clear();
    });
    if (f->json) out += "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    return kExitOk;
  };
}

}  // namespace lowrank::cli::gpt2
