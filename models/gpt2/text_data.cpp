// Text files -> documents -> uint16 token streams (cached) -> batches (see text_data.h).
#include "models/gpt2/text_data.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "core/clock.h"
#include "core/io/file_util.h"
#include "core/rng.h"

namespace lowrank::models::gpt2 {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "the token cache is written little-endian");

namespace {

constexpr char kMagic[8] = {'L', 'R', 'G', 'P', 'T', '2', 'T', 'K'};
constexpr size_t kHeaderBytes = 72;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LR_CHECK(in.good(), "text data: cannot read {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  LR_CHECK(!in.bad(), "text data: error while reading {}", path);
  return ss.str();
}

uint64_t mix(uint64_t h, uint64_t v) {
  return fnv1a64(std::string_view(reinterpret_cast<const char*>(&v), sizeof v), h);
}

// A document's side of the split: a hash of its text against the fraction.
bool hashed_to_val(std::string_view doc, double val_fraction) {
  const uint64_t h = fnv1a64(doc) * 0x9E3779B97F4A7C15ull;
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) < val_fraction;
}

bool is_hidden_or_index(const fs::path& p) {
  const std::string name = p.filename().string();
  const std::string ext = p.extension().string();
  return name.empty() || name[0] == '.' || ext == ".dat" || ext == ".u8";
}

void put_u64(std::string& s, uint64_t v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
uint64_t get_u64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint64_t checksum(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  uint64_t h = fnv1a64(std::string_view(reinterpret_cast<const char*>(a.data()), a.size() * 2));
  return fnv1a64(std::string_view(reinterpret_cast<const char*>(b.data()), b.size() * 2), h);
}

}  // namespace

std::vector<std::string> list_text_files(const std::vector<std::string>& paths) {
  LR_CHECK(!paths.empty(), "text data: no input paths given");
  std::set<std::string> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    const fs::file_status st = fs::status(p, ec);
    LR_CHECK(!ec && fs::exists(st), "text data: {} does not exist", p);
    if (fs::is_directory(st)) {
      size_t before = files.size();
      for (const auto& entry : fs::directory_iterator(p)) {
        if (is_hidden_or_index(entry.path())) continue;
        if (!fs::is_regular_file(entry.status())) continue;  // follows links; skips folders
        files.insert(entry.path().string());
      }
      LR_CHECK(files.size() > before, "text data: folder {} holds no text files", p);
    } else {
      LR_CHECK(fs::is_regular_file(st), "text data: {} is not a regular file", p);
      files.insert(p);
    }
  }
  return {files.begin(), files.end()};
}

std::vector<std::string_view> split_documents(std::string_view text) {
  std::vector<std::string_view> docs;
  auto add = [&](std::string_view d) {
    if (d.find_first_not_of(" \t\r\n\f\v") != std::string_view::npos) docs.push_back(d);
  };
  size_t doc_start = 0, line_start = 0;
  while (line_start < text.size()) {
    size_t nl = text.find('\n', line_start);
    size_t line_end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(line_start, line_end - line_start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t next = nl == std::string_view::npos ? text.size() : nl + 1;
    if (line == "%") {
      add(text.substr(doc_start, line_start - doc_start));
      doc_start = next;
    }
    line_start = next;
  }
  add(text.substr(doc_start));
  return docs;
}

uint64_t fnv1a64(std::string_view bytes, uint64_t h) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t vocab_fingerprint(const std::string& vocab_dir) {
  uint64_t h = fnv1a64("lowrank-vocab");
  int found = 0;
  for (const char* name : {"encoder.json", "vocab.bpe", "vocab.json", "merges.txt"}) {
    const fs::path p = fs::path(vocab_dir) / name;
    if (!fs::is_regular_file(p)) continue;
    ++found;
    h = fnv1a64(name, h);
    h = fnv1a64(read_file(p.string()), h);
  }
  LR_CHECK(found > 0, "text data: {} holds no vocabulary files (encoder.json + vocab.bpe or vocab.json + merges.txt)",
           vocab_dir);
  return h;
}

// ---- cache file

void write_token_cache(const std::string& path, const TokenData& d, uint64_t vocab_fp) {
  std::string header(kMagic, sizeof kMagic);
  const uint64_t version_word = kTokenCacheVersion;  // u32 version + u32 reserved (0)
  put_u64(header, version_word);
  put_u64(header, d.key);
  put_u64(header, vocab_fp);
  put_u64(header, d.train.size());
  put_u64(header, d.val.size());
  put_u64(header, static_cast<uint64_t>(d.documents));
  put_u64(header, static_cast<uint64_t>(d.val_documents));
  put_u64(header, static_cast<uint64_t>(d.text_bytes));
  LR_CHECK(header.size() == kHeaderBytes, "token cache: header is {} bytes", header.size());
  io::AtomicFileWriter w(path);
  w.write(header.data(), header.size());
  w.write(d.train.data(), d.train.size() * sizeof(uint16_t));
  w.write(d.val.data(), d.val.size() * sizeof(uint16_t));
  const uint64_t sum = checksum(d.train, d.val);
  w.write(&sum, sizeof sum);
  w.commit();
}

bool read_token_cache(const std::string& path, uint64_t key, TokenData& out, std::string& why) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    why = "no cache file";
    return false;
  }
  const uint64_t size = fs::file_size(path, ec);
  if (ec || size < kHeaderBytes + 8) {
    why = "the cache file is truncated";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  char h[kHeaderBytes];
  if (!in.read(h, sizeof h)) {
    why = "the cache header cannot be read";
    return false;
  }
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) {
    why = "not a token cache file";
    return false;
  }
  if (get_u64(h + 8) != kTokenCacheVersion) {
    why = "the cache was written by another format version";
    return false;
  }
  if (get_u64(h + 16) != key) {
    why = "the cache was made from other text, vocabulary or split";
    return false;
  }
  const uint64_t n_train = get_u64(h + 32), n_val = get_u64(h + 40);
  if (n_train > size || n_val > size || kHeaderBytes + 2 * (n_train + n_val) + 8 != size) {
    why = "the cache file's size does not match its header";
    return false;
  }
  const uint64_t docs = get_u64(h + 48), val_docs = get_u64(h + 56), text_bytes = get_u64(h + 64);
  // Each document starts with <|endoftext|>, so it holds at least one token; counts read as int64
  // must not turn negative.
  if (docs == 0 || docs > n_train + n_val || val_docs > docs || text_bytes > static_cast<uint64_t>(INT64_MAX)) {
    why = "the cache header's document counts are impossible";
    return false;
  }
  TokenData d;
  d.key = key;
  d.documents = static_cast<int64_t>(get_u64(h + 48));
  d.val_documents = static_cast<int64_t>(get_u64(h + 56));
  d.text_bytes = static_cast<int64_t>(get_u64(h + 64));
  d.train.resize(n_train);
  d.val.resize(n_val);
  uint64_t sum = 0;
  in.read(reinterpret_cast<char*>(d.train.data()), static_cast<std::streamsize>(n_train * 2));
  in.read(reinterpret_cast<char*>(d.val.data()), static_cast<std::streamsize>(n_val * 2));
  in.read(reinterpret_cast<char*>(&sum), sizeof sum);
  if (!in || sum != checksum(d.train, d.val)) {
    why = "the cache file is corrupt (checksum mismatch)";
    return false;
  }
  out = std::move(d);
  return true;
}

// ---- building the streams

TokenData load_token_data(const TextEncoder& enc, const TokenDataOptions& o) {
  const double t0 = now_seconds();
  LR_CHECK(enc.encode, "text data: no encoder");
  LR_CHECK(enc.vocab_size > 0 && enc.vocab_size <= 65536,
           "text data: vocabulary of {} ids does not fit the uint16 token cache", enc.vocab_size);
  LR_CHECK(enc.eot_id >= 0 && enc.eot_id < enc.vocab_size, "text data: <|endoftext|> id {} outside the vocabulary",
           enc.eot_id);
  LR_CHECK(o.val_fraction >= 0.0 && o.val_fraction < 1.0, "text data: validation fraction must be in [0, 1), got {}",
           o.val_fraction);
  LR_CHECK(!o.files.empty(), "text data: no text files");

  std::vector<std::string> texts;
  uint64_t key = fnv1a64("lowrank-gpt2-tokens");
  key = mix(key, kTokenCacheVersion);
  key = mix(key, enc.fingerprint);
  key = mix(key, static_cast<uint64_t>(enc.eot_id));
  key = mix(key, std::bit_cast<uint64_t>(o.val_fraction));
  int64_t bytes = 0;
  for (const std::string& f : o.files) {
    texts.push_back(read_file(f));
    key = fnv1a64(fs::absolute(f).lexically_normal().string(), key);
    key = mix(key, texts.back().size());
    key = fnv1a64(texts.back(), key);
    bytes += static_cast<int64_t>(texts.back().size());
  }

  TokenData d;
  if (!o.cache_dir.empty()) {
    char name[40];
    std::snprintf(name, sizeof name, "tokens-%016llx.bin", static_cast<unsigned long long>(key));
    d.cache_path = (fs::path(o.cache_dir) / name).string();
    std::string why;
    if (read_token_cache(d.cache_path, key, d, why)) {
      d.cache_path = (fs::path(o.cache_dir) / name).string();
      d.from_cache = true;
      d.seconds = now_seconds() - t0;
      return d;
    }
  }

  std::vector<std::string_view> docs;
  for (const std::string& t : texts)
    for (std::string_view doc : split_documents(t)) docs.push_back(doc);
  LR_CHECK(!docs.empty(), "text data: the {} file(s) hold no text", o.files.size());

  std::vector<char> to_val(docs.size(), 0);
  size_t n_val = 0;
  if (o.val_fraction > 0.0 && docs.size() >= 2) {
    for (size_t i = 0; i < docs.size(); ++i) n_val += (to_val[i] = hashed_to_val(docs[i], o.val_fraction));
    if (n_val == 0) to_val.back() = 1, n_val = 1;              // too few documents for the hash to pick one
    if (n_val == docs.size()) to_val.front() = 0, n_val -= 1;  // keep something to train on
  }

  // Encode in contiguous chunks, one per thread, then concatenate in document order.
  std::vector<std::vector<int64_t>> encoded(docs.size());
  const size_t n_threads = std::clamp<size_t>(static_cast<size_t>(std::max(o.threads, 1)), 1, docs.size());
  std::vector<std::string> errors(n_threads);
  auto work = [&](size_t t) {
    try {
      for (size_t i = t * docs.size() / n_threads; i < (t + 1) * docs.size() / n_threads; ++i)
        encoded[i] = enc.encode(docs[i]);
    } catch (const std::exception& e) {
      errors[t] = e.what();
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  for (const std::string& e : errors) LR_CHECK(e.empty(), "text data: encoding failed: {}", e);

  for (size_t i = 0; i < docs.size(); ++i) {
    std::vector<uint16_t>& out = to_val[i] ? d.val : d.train;
    out.push_back(static_cast<uint16_t>(enc.eot_id));
    for (int64_t id : encoded[i]) {
      LR_CHECK(id >= 0 && id < enc.vocab_size, "text data: the encoder gave id {} outside [0, {})", id, enc.vocab_size);
      out.push_back(static_cast<uint16_t>(id));
    }
  }
  d.documents = static_cast<int64_t>(docs.size());
  d.val_documents = static_cast<int64_t>(n_val);
  d.text_bytes = bytes;
  d.key = key;
  if (!d.cache_path.empty()) {
    fs::create_directories(o.cache_dir);
    write_token_cache(d.cache_path, d, enc.fingerprint);
  }
  d.seconds = now_seconds() - t0;
  return d;
}

// ---- batches

Batch random_batch(const std::vector<uint16_t>& tokens, int64_t batch, int64_t seq_len, uint64_t seed, int64_t step) {
  LR_CHECK(batch >= 1 && seq_len >= 1, "batches: batch ({}) and sequence length ({}) must be >= 1", batch, seq_len);
  LR_CHECK(batch < (1 << 24), "batches: batch {} too large", batch);
  LR_CHECK(step >= 0, "batches: step must be >= 0, got {}", step);
  const int64_t n = static_cast<int64_t>(tokens.size());
  LR_CHECK(n >= seq_len + 1, "batches: the training text has {} tokens, fewer than the sequence length + 1 ({})", n,
           seq_len + 1);
  const uint64_t starts = static_cast<uint64_t>(n - seq_len);  // windows [s, s + T] with s in [0, n - T - 1]
  const uint64_t key = seed ^ 0xD1B54A32D192ED03ull;           // not the weights' Philox stream
  std::vector<int64_t> x(static_cast<size_t>(batch * seq_len)), y(x.size());
  for (int64_t b = 0; b < batch; ++b) {
    const Philox4 r = philox4x32_10((static_cast<uint64_t>(step) << 24) | static_cast<uint64_t>(b), key);
    const uint64_t s = ((static_cast<uint64_t>(r.v[0]) << 32) | r.v[1]) % starts;
    for (int64_t t = 0; t < seq_len; ++t) {
      x[static_cast<size_t>(b * seq_len + t)] = tokens[s + static_cast<uint64_t>(t)];
      y[static_cast<size_t>(b * seq_len + t)] = tokens[s + static_cast<uint64_t>(t) + 1];
    }
  }
  return {Tensor::from_vector(x, {batch, seq_len}), Tensor::from_vector(y, {batch, seq_len})};
}

std::vector<Batch> sequential_batches(const std::vector<uint16_t>& tokens, int64_t batch, int64_t seq_len,
                                      int64_t max_windows) {
  LR_CHECK(batch >= 1 && seq_len >= 1, "batches: batch ({}) and sequence length ({}) must be >= 1", batch, seq_len);
  const int64_t n = static_cast<int64_t>(tokens.size());
  int64_t windows = n >= seq_len + 1 ? (n - 1) / seq_len : 0;
  if (max_windows > 0) windows = std::min(windows, max_windows);
  std::vector<Batch> out;
  for (int64_t w0 = 0; w0 < windows; w0 += batch) {
    const int64_t b_n = std::min(batch, windows - w0);
    std::vector<int64_t> x(static_cast<size_t>(b_n * seq_len)), y(x.size());
    for (int64_t b = 0; b < b_n; ++b)
      for (int64_t t = 0; t < seq_len; ++t) {
        const size_t src = static_cast<size_t>((w0 + b) * seq_len + t);
        x[static_cast<size_t>(b * seq_len + t)] = tokens[src];
        y[static_cast<size_t>(b * seq_len + t)] = tokens[src + 1];
      }
    out.push_back({Tensor::from_vector(x, {b_n, seq_len}), Tensor::from_vector(y, {b_n, seq_len})});
  }
  return out;
}

std::vector<EvalWindow> sliding_windows(int64_t n_tokens, int64_t n_ctx, int64_t stride) {
  LR_CHECK(n_ctx >= 1, "perplexity: context must be >= 1, got {}", n_ctx);
  LR_CHECK(stride >= 1 && stride <= n_ctx, "perplexity: stride must be in [1, {}] (the context), got {}", n_ctx,
           stride);
  LR_CHECK(n_tokens >= 2, "perplexity: the text has {} token(s); at least 2 are needed", n_tokens);
  std::vector<EvalWindow> out;
  int64_t scored_to = 1;  // targets before this position are already scored (token 0 never is)
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + n_ctx + 1, n_tokens);
    out.push_back({begin, end, std::max(begin + 1, scored_to)});
    scored_to = end;
    if (end == n_tokens) break;
  }
  return out;
}

}  // namespace lowrank::models::gpt2
