// safetensors reader and writer. The reader validates the whole header (JSON, dtypes, shapes,
// offsets that tile the data section exactly) before it reads a byte of tensor data.
#include "core/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "core/autograd.h"
#include "core/io/file_util.h"
#include "core/io/half.h"
#include "core/io/json_util.h"

namespace lowrank::io {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; a bigger one is a lying length field.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

struct FileDType {
  const char* name;
  DType stored;  // what the bytes are
  DType loaded;  // what load_safetensors returns (halves widen to f32)
};

constexpr FileDType kFileDTypes[] = {
    {"F64", DType::F64, DType::F64},   {"F32", DType::F32, DType::F32}, {"F16", DType::F16, DType::F32},
    {"BF16", DType::BF16, DType::F32}, {"I64", DType::I64, DType::I64}, {"I32", DType::I32, DType::I32},
    {"U8", DType::U8, DType::U8},
};

const FileDType* find_file_dtype(const std::string& name) {
  for (const FileDType& d : kFileDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

const char* file_dtype_name(DType t) {
  for (const FileDType& d : kFileDTypes)
    if (d.stored == t) return d.name;
  LR_FAIL("save_safetensors: dtype {} cannot be stored", dtype_name(t));
}

struct Entry {
  std::string name;
  const FileDType* dtype = nullptr;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

void read_exact(FILE* f, void* dst, uint64_t nbytes, uint64_t at, const std::string& path) {
  LR_CHECK(fseeko(f, static_cast<off_t>(at), SEEK_SET) == 0, "safetensors: {}: seek to byte {} failed", path, at);
  size_t got = nbytes ? std::fread(dst, 1, nbytes, f) : 0;
  LR_CHECK(got == nbytes, "safetensors: {}: read {} of {} bytes at byte {} (file changed while reading?)", path, got,
           nbytes, at);
}

uint64_t json_uint(const json& v, const std::string& path, const std::string& name, const char* field) {
  LR_CHECK(v.is_number_unsigned(), "safetensors: {}: tensor '{}': {} must hold non-negative integers, found {}", path,
           name, field, json_excerpt(v));
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const json& info, const std::string& path) {
  LR_CHECK(info.is_object(),
           "safetensors: {}: tensor '{}': expected an object with dtype, shape and data_offsets, "
           "found {}",
           path, name, json_excerpt(info));
  for (auto it = info.begin(); it != info.end(); ++it)
    LR_CHECK(it.key() == "dtype" || it.key() == "shape" || it.key() == "data_offsets",
             "safetensors: {}: tensor '{}': unexpected field '{}'", path, name, it.key());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    LR_CHECK(info.contains(field), "safetensors: {}: tensor '{}': missing field '{}'", path, name, field);

  Entry e;
  e.name = name;
  const json& dt = info["dtype"];
  LR_CHECK(dt.is_string(), "safetensors: {}: tensor '{}': dtype must be a string, found {}", path, name,
           json_excerpt(dt));
  e.dtype = find_file_dtype(dt.get<std::string>());
  LR_CHECK(e.dtype != nullptr,
           "safetensors: {}: tensor '{}': unsupported dtype '{}' (supported: F64, F32, F16, "
           "BF16, I64, I32, U8)",
           path, name, dt.get<std::string>());

  const json& shape = info["shape"];
  LR_CHECK(shape.is_array(), "safetensors: {}: tensor '{}': shape must be an array, found {}", path, name,
           json_excerpt(shape));
  uint64_t numel = 1;
  for (const json& d : shape) {
    uint64_t n = json_uint(d, path, name, "shape");
    LR_CHECK(n <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(numel, n, &numel),
             "safetensors: {}: tensor '{}': shape {} overflows", path, name, json_excerpt(shape));
    e.shape.push_back(static_cast<int64_t>(n));
  }
  uint64_t nbytes = 0;
  LR_CHECK(!__builtin_mul_overflow(numel, dtype_size(e.dtype->stored), &nbytes),
           "safetensors: {}: tensor '{}': shape {} overflows", path, name, json_excerpt(shape));

  const json& off = info["data_offsets"];
  LR_CHECK(off.is_array() && off.size() == 2,
           "safetensors: {}: tensor '{}': data_offsets must be [begin, end], "
           "found {}",
           path, name, json_excerpt(off));
  e.begin = json_uint(off[0], path, name, "data_offsets");
  e.end = json_uint(off[1], path, name, "data_offsets");
  LR_CHECK(e.begin <= e.end, "safetensors: {}: tensor '{}': data_offsets [{}, {}] end before they begin", path, name,
           e.begin, e.end);
  LR_CHECK(e.end - e.begin == nbytes,
           "safetensors: {}: tensor '{}': data_offsets [{}, {}] hold {} bytes but "
           "{} {} needs {}",
           path, name, e.begin, e.end, e.end - e.begin, e.dtype->name, shape_str(e.shape), nbytes);
  return e;
}

// Finds the first key named twice in one object, at any depth (nlohmann's tree would keep the
// last one silently). A SAX pass of its own: nlohmann's parser callback rescans the parent object
// after every child object, which made a header of n tensors cost O(n^2) (50k tensors: 15 s).
class DuplicateKeyFinder : public nlohmann::json_sax<json> {
 public:
  std::string duplicate;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return open_.emplace_back(), true; }
  bool key(string_t& k) override {
    if (!open_.back().insert(k).second) {
      duplicate = k;
      return false;  // stops the pass; the caller reports the key
    }
    return true;
  }
  bool end_object() override { return open_.pop_back(), true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;  // the tree parse that follows reports syntax errors with their position
  }

 private:
  std::vector<std::set<std::string>> open_;
};

json parse_header(const std::string& text, const std::string& path) {
  const std::string what = "safetensors: " + path + ": the header";
  check_json_depth(text, what);
  DuplicateKeyFinder finder;
  json::sax_parse(text, &finder);
  LR_CHECK(finder.duplicate.empty(), "safetensors: {}: the header names '{}' twice", path, excerpt(finder.duplicate));
  json header = parse_json(text, what);
  LR_CHECK(header.is_object(), "safetensors: {}: the header must be a JSON object, found {}", path, header.type_name());
  return header;
}

// Offsets must tile [0, data_len) exactly, in any order: no overlap, no gap, nothing past the end.
void check_layout(std::vector<Entry*> entries, uint64_t data_len, const std::string& path) {
  std::sort(entries.begin(), entries.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : entries) {
    LR_CHECK(e->end <= data_len,
             "safetensors: {}: tensor '{}': data_offsets [{}, {}] run past the end of the "
             "data ({} bytes)",
             path, e->name, e->begin, e->end, data_len);
    LR_CHECK(e->begin >= cursor, "safetensors: {}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path,
             prev ? prev->name : "", prev ? prev->begin : 0, prev ? prev->end : 0, e->name, e->begin, e->end);
    LR_CHECK(e->begin == cursor,
             "safetensors: {}: bytes [{}, {}) of the data belong to no tensor (a gap before "
             "'{}')",
             path, cursor, e->begin, e->name);
    cursor = e->end;
    prev = e;
  }
  LR_CHECK(cursor == data_len, "safetensors: {}: bytes [{}, {}) of the data belong to no tensor (trailing data)", path,
           cursor, data_len);
}

Tensor read_tensor(FILE* f, const Entry& e, uint64_t data_start, const std::string& path) {
  Tensor t = Tensor::empty(e.shape, e.dtype->loaded);
  uint64_t nbytes = e.end - e.begin;
  if (nbytes == 0) return t;
  if (e.dtype->stored == e.dtype->loaded) {
    read_exact(f, t.raw_data(), nbytes, data_start + e.begin, path);
    return t;
  }
  std::vector<uint16_t> halves(nbytes / 2);
  read_exact(f, halves.data(), nbytes, data_start + e.begin, path);
  float* out = t.data<float>();
  if (e.dtype->stored == DType::F16)
    for (size_t i = 0; i < halves.size(); ++i) out[i] = f16_to_f32(halves[i]);
  else
    for (size_t i = 0; i < halves.size(); ++i) out[i] = bf16_to_f32(halves[i]);
  return t;
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  uint64_t size = file_size_or_throw(path, "safetensors");
  FilePtr f(std::fopen(path.c_str(), "rb"));
  LR_CHECK(f != nullptr, "safetensors: cannot open {}: {}", path, std::strerror(errno));
  LR_CHECK(size >= 8, "safetensors: {}: the file has {} bytes, fewer than the 8-byte header length", path, size);

  unsigned char len_bytes[8];
  read_exact(f.get(), len_bytes, 8, 0, path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  LR_CHECK(header_len <= size - 8, "safetensors: {}: the header length {} runs past the end of the file ({} bytes)",
           path, header_len, size);
  LR_CHECK(header_len <= kMaxHeaderBytes, "safetensors: {}: the header length {} exceeds the {} byte limit", path,
           header_len, kMaxHeaderBytes);
  std::string text(header_len, '\0');
  read_exact(f.get(), text.data(), header_len, 8, path);
  json header = parse_header(text, path);

  SafetensorsFile out;
  std::vector<Entry> entries;
  entries.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      LR_CHECK(it.value().is_object(), "safetensors: {}: __metadata__ must be an object of strings, found {}", path,
               it.value().dump());
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        LR_CHECK(m.value().is_string(), "safetensors: {}: __metadata__ '{}' must be a string, found {}", path, m.key(),
                 m.value().dump());
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(it.key(), it.value(), path));
  }
  uint64_t data_start = 8 + header_len;
  std::vector<Entry*> ptrs;
  for (Entry& e : entries) ptrs.push_back(&e);
  check_layout(ptrs, size - data_start, path);

  for (const Entry& e : entries) out.tensors.emplace(e.name, read_tensor(f.get(), e, data_start, path));
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  NoGradGuard no_grad;
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    LR_CHECK(name != kMetadataKey, "save_safetensors {}: a tensor cannot be named {}", path, kMetadataKey);
    LR_CHECK(t.defined(), "save_safetensors {}: tensor '{}' is undefined", path, name);
    Tensor c = t.detach();
    if (!c.device().is_cpu()) c = c.to(Device::cpu());  // to() makes it contiguous on the way
    c = c.contiguous();
    header[name] = {
        {"dtype", file_dtype_name(c.dtype())}, {"shape", c.shape()}, {"data_offsets", {offset, offset + c.nbytes()}}};
    offset += c.nbytes();
    host.push_back(std::move(c));
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;

  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned, as the reference writer does
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(static_cast<uint64_t>(text.size()) >> (8 * i));

  AtomicFileWriter w(path);
  w.write(len_bytes, 8);
  w.write(text.data(), text.size());
  for (const Tensor& c : host)
    if (c.nbytes()) w.write(c.raw_data(), c.nbytes());
  w.commit();
}

}  // namespace lowrank::io
