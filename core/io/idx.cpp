// IDX reader (zlib reads gzip and raw files alike) and writer. The header is checked against the
// bytes that actually follow, so a truncated or lying file is an error, never a short tensor.
#include "core/io/idx.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <cstring>
#include <memory>
#include <vector>

#include "core/autograd.h"
#include "core/io/file_util.h"

namespace lowrank::io {
namespace {

// Deflate cannot expand data by more than about 1032:1, so a gzip file of n bytes holds at most
// this many times n; a header promising more is lying and is refused before any allocation.
constexpr uint64_t kMaxDeflateRatio = 1032;
constexpr uint64_t kMaxRank = 16;

struct IdxType {
  uint8_t code;
  const char* name;
  size_t file_size;  // bytes per element in the file
  DType dtype;       // what we return
};

constexpr IdxType kIdxTypes[] = {
    {0x08, "u8", 1, DType::U8},   {0x09, "i8", 1, DType::I32},  {0x0B, "i16", 2, DType::I32},
    {0x0C, "i32", 4, DType::I32}, {0x0D, "f32", 4, DType::F32}, {0x0E, "f64", 8, DType::F64},
};

const IdxType* find_type(uint8_t code) {
  for (const IdxType& t : kIdxTypes)
    if (t.code == code) return &t;
  return nullptr;
}

// A byte source: a zlib file or memory. read() returns the number of bytes read (short at the end).
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t read(void* dst, uint64_t n) = 0;
  // "" when the stream is healthy; otherwise what went wrong (a corrupt or cut gzip stream).
  virtual std::string error() = 0;
  // An upper bound on the bytes left after the header; valid once the first bytes were read.
  virtual uint64_t max_payload() = 0;
};

class GzSource : public Source {
 public:
  GzSource(const std::string& path, uint64_t file_size) : path_(path), file_size_(file_size) {
    f_ = gzopen(path.c_str(), "rb");
    LR_CHECK(f_ != nullptr, "idx: cannot open {}: {}", path, std::strerror(errno));
    gzbuffer(f_, 1 << 20);
  }
  ~GzSource() override { gzclose(f_); }
  uint64_t read(void* dst, uint64_t n) override {
    uint64_t done = 0;
    char* p = static_cast<char*>(dst);
    while (done < n) {
      unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(n - done, 1u << 30));
      int got = gzread(f_, p + done, chunk);
      if (got <= 0) break;
      done += static_cast<uint64_t>(got);
    }
    return done;
  }
  std::string error() override {
    int err = Z_OK;
    const char* msg = gzerror(f_, &err);
    if (err == Z_OK || err == Z_STREAM_END) return "";
    return err == Z_BUF_ERROR ? "the gzip stream is cut short" : std::string("gzip: ") + (msg ? msg : "error");
  }
  uint64_t max_payload() override { return gzdirect(f_) ? file_size_ : file_size_ * kMaxDeflateRatio + (1u << 20); }

 private:
  std::string path_;
  uint64_t file_size_;
  gzFile f_ = nullptr;
};

class MemorySource : public Source {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  uint64_t read(void* dst, uint64_t n) override {
    uint64_t take = std::min<uint64_t>(n, bytes_.size() - pos_);
    if (take) std::memcpy(dst, bytes_.data() + pos_, take);
    pos_ += take;
    return take;
  }
  std::string error() override { return ""; }
  uint64_t max_payload() override { return bytes_.size(); }

 private:
  std::string_view bytes_;
  uint64_t pos_ = 0;
};

uint32_t load_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

template <class T>
T byteswap(T v) {
  auto b = std::bit_cast<std::array<unsigned char, sizeof(T)>>(v);
  std::reverse(b.begin(), b.end());
  return std::bit_cast<T>(b);
}

std::string describe_truncation(Source& src, const std::string& source, const std::string& what, uint64_t got,
                                uint64_t want) {
  std::string err = src.error();
  return detail::format("idx: {}: truncated file: {} needs {} bytes, only {} are there{}{}", source, what, want, got,
                        err.empty() ? "" : ": ", err);
}

// Reads exactly n bytes or throws naming the file and what was being read.
void read_exact(Source& src, void* dst, uint64_t n, const std::string& source, const std::string& what) {
  uint64_t got = src.read(dst, n);
  if (got != n) LR_FAIL("{}", describe_truncation(src, source, what, got, n));
}

std::string hex_byte(unsigned v) {
  const char* digits = "0123456789ABCDEF";
  return std::string("0x") + digits[(v >> 4) & 0xf] + digits[v & 0xf];
}

Tensor parse_idx(Source& src, const std::string& source) {
  unsigned char magic[4];
  read_exact(src, magic, 4, source, "the 4-byte magic number");
  LR_CHECK(magic[0] == 0 && magic[1] == 0, "idx: {}: not an IDX file (magic starts {} {}, expected 0x00 0x00)", source,
           hex_byte(magic[0]), hex_byte(magic[1]));
  const IdxType* type = find_type(magic[2]);
  LR_CHECK(type != nullptr,
           "idx: {}: unknown element type byte {} (known: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, "
           "0x0D f32, 0x0E f64)",
           source, hex_byte(magic[2]));
  uint64_t rank = magic[3];
  LR_CHECK(rank >= 1 && rank <= kMaxRank, "idx: {}: rank {} is outside 1..{}", source, rank, kMaxRank);

  std::vector<unsigned char> dim_bytes(4 * rank);
  read_exact(src, dim_bytes.data(), dim_bytes.size(), source, "the header's dimensions");
  Shape shape;
  uint64_t numel = 1;
  for (uint64_t i = 0; i < rank; ++i) {
    uint32_t d = load_be32(&dim_bytes[4 * i]);
    shape.push_back(d);
    LR_CHECK(!__builtin_mul_overflow(numel, uint64_t{d}, &numel), "idx: {}: dimensions {} overflow", source, shape);
  }
  uint64_t payload = 0;
  LR_CHECK(!__builtin_mul_overflow(numel, uint64_t{type->file_size}, &payload), "idx: {}: dimensions {} overflow",
           source, shape);
  uint64_t max_payload = src.max_payload();
  LR_CHECK(payload <= max_payload,
           "idx: {}: the header promises {} {} elements of shape {} ({} bytes) but the file "
           "cannot hold more than {} bytes of data",
           source, numel, type->name, shape, payload, max_payload);

  Tensor t = Tensor::empty(shape, type->dtype);
  std::string what = detail::format("{} {} data", shape_str(shape), type->name);
  if (type->file_size == dtype_size(type->dtype)) {
    read_exact(src, t.raw_data(), payload, source, what);
    if (type->file_size == 4) {
      auto* p = static_cast<uint32_t*>(t.raw_data());
      for (uint64_t i = 0; i < numel; ++i) p[i] = byteswap(p[i]);
    } else if (type->file_size == 8) {
      auto* p = static_cast<uint64_t*>(t.raw_data());
      for (uint64_t i = 0; i < numel; ++i) p[i] = byteswap(p[i]);
    }
  } else {
    std::vector<unsigned char> raw(payload);
    read_exact(src, raw.data(), payload, source, what);
    int32_t* out = t.data<int32_t>();
    if (type->file_size == 1) {
      for (uint64_t i = 0; i < numel; ++i) out[i] = static_cast<int8_t>(raw[i]);
    } else {
      for (uint64_t i = 0; i < numel; ++i)
        out[i] = static_cast<int16_t>(static_cast<uint16_t>((raw[2 * i] << 8) | raw[2 * i + 1]));
    }
  }
  unsigned char extra[64];
  uint64_t more = src.read(extra, sizeof(extra));
  LR_CHECK(more == 0, "idx: {}: {}{} bytes follow the {} bytes of {} that the header describes (a lying header?)",
           source, more == sizeof(extra) ? "at least " : "", more, payload, what);
  std::string err = src.error();
  LR_CHECK(err.empty(), "idx: {}: {}", source, err);
  return t;
}

}  // namespace

Tensor read_idx(const std::string& path) {
  GzSource src(path, file_size_or_throw(path, "idx"));
  return parse_idx(src, path);
}

Tensor decode_idx(std::string_view bytes, const std::string& source) {
  MemorySource src(bytes);
  return parse_idx(src, source);
}

std::string encode_idx(const Tensor& t) {
  LR_CHECK(t.defined(), "encode_idx: undefined tensor");
  const IdxType* type = nullptr;
  for (const IdxType& k : kIdxTypes)
    if (k.dtype == t.dtype() && k.file_size == dtype_size(t.dtype())) type = &k;
  LR_CHECK(type != nullptr, "encode_idx: dtype {} has no IDX type (u8, i32, f32, f64 do)", dtype_name(t.dtype()));
  LR_CHECK(t.dim() >= 1 && t.dim() <= static_cast<int64_t>(kMaxRank),
           "encode_idx: rank {} of shape {} is outside "
           "1..{}",
           t.dim(), t.shape(), kMaxRank);
  for (int64_t d : t.shape())
    LR_CHECK(d <= static_cast<int64_t>(UINT32_MAX), "encode_idx: dimension {} of {} exceeds u32", d, t.shape());
  NoGradGuard no_grad;
  Tensor c = t.detach().to(Device::cpu()).contiguous();
  std::string out;
  out.push_back('\0');
  out.push_back('\0');
  out.push_back(static_cast<char>(type->code));
  out.push_back(static_cast<char>(t.dim()));
  for (int64_t d : t.shape())
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((static_cast<uint64_t>(d) >> s) & 0xff));
  const auto* p = static_cast<const unsigned char*>(c.raw_data());
  size_t es = type->file_size;
  for (int64_t i = 0; i < c.numel(); ++i)
    for (size_t b = 0; b < es; ++b) out.push_back(static_cast<char>(p[i * es + (es - 1 - b)]));
  return out;
}

}  // namespace lowrank::io
