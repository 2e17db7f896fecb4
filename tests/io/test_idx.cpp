// IDX reader: every element type, gzip and raw files, and truncated, corrupt or lying files.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>

#include "core/io/idx.h"
#include "core/ops.h"
#include "support/errors.h"
#include "support/files.h"

namespace lowrank {
namespace {

using io::decode_idx;
using io::encode_idx;
using io::read_idx;
using test::read_bytes;
using test::TempDir;
using test::write_bytes;

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string header(uint8_t type, std::initializer_list<uint32_t> dims) {
  std::string h{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>((d >> s) & 0xff));
  return h;
}

Tensor u8_tensor(const Shape& shape) {
  std::vector<uint8_t> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  return Tensor::from_data<uint8_t>(std::span<const uint8_t>(v), shape);
}

TEST(Idx, U8HeaderAndBytesAreReadAsWritten) {
  // 2x3 u8 by hand: magic 00 00 08 02, dims 2 and 3 big-endian, then 6 bytes.
  std::string bytes = header(0x08, {2, 3}) + std::string{1, 2, 3, 4, 5, '\xff'};
  Tensor t = decode_idx(bytes, "mem");
  EXPECT_EQ(t.dtype(), DType::U8);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.to_vector<uint8_t>(), (std::vector<uint8_t>{1, 2, 3, 4, 5, 255}));
  EXPECT_EQ(encode_idx(t), bytes);
}

TEST(Idx, BigEndianTypesAreConverted) {
  // i32 -2 = FF FF FF FE, 258 = 00 00 01 02
  Tensor i = decode_idx(header(0x0C, {2}) + std::string{'\xff', '\xff', '\xff', '\xfe', 0, 0, 1, 2}, "mem");
  EXPECT_EQ(i.dtype(), DType::I32);
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{-2, 258}));
  // f32 1.5 = 3F C0 00 00
  Tensor f = decode_idx(header(0x0D, {1}) + std::string{0x3f, '\xc0', 0, 0}, "mem");
  EXPECT_EQ(f.to_vector<float>(), (std::vector<float>{1.5f}));
  // f64 -0.25 = BF D0 00 .. 00
  Tensor d = decode_idx(header(0x0E, {1}) + std::string{'\xbf', '\xd0', 0, 0, 0, 0, 0, 0}, "mem");
  EXPECT_EQ(d.to_vector<double>(), (std::vector<double>{-0.25}));
  // i8 -1, 5 widen to I32; i16 -300 = FE D4
  Tensor b = decode_idx(header(0x09, {2}) + std::string{'\xff', 5}, "mem");
  EXPECT_EQ(b.dtype(), DType::I32);
  EXPECT_EQ(b.to_vector<int32_t>(), (std::vector<int32_t>{-1, 5}));
  Tensor s = decode_idx(header(0x0B, {1}) + std::string{'\xfe', '\xd4'}, "mem");
  EXPECT_EQ(s.to_vector<int32_t>(), (std::vector<int32_t>{-300}));
}

TEST(Idx, EncodeDecodeRoundTripsEveryWritableType) {
  Tensor u8 = u8_tensor({3, 4, 5});
  Tensor i32 = ((Tensor::arange(24, DType::F64) - 12.0) * 1e6).to(DType::I32).reshape({2, 12});
  Tensor f32 = Tensor::arange(10) / 3.0;
  Tensor f64 = Tensor::arange(7, DType::F64) * -1.1;
  for (const Tensor& t : {u8, i32, f32, f64}) {
    Tensor back = decode_idx(encode_idx(t), "mem");
    ASSERT_EQ(back.dtype(), t.dtype());
    ASSERT_EQ(back.shape(), t.shape());
    EXPECT_EQ(back.to_vector<double>(), t.to_vector<double>());
  }
}

TEST(Idx, GzipAndRawFilesReadTheSame) {
  TempDir dir;
  Tensor t = u8_tensor({10, 28, 28});
  std::string bytes = encode_idx(t);
  write_bytes(dir.file("x-idx3-ubyte"), bytes);
  write_gz(dir.file("x-idx3-ubyte.gz"), bytes);
  ASSERT_NE(read_bytes(dir.file("x-idx3-ubyte.gz")).substr(0, 2), bytes.substr(0, 2));  // really compressed
  for (const char* name : {"x-idx3-ubyte", "x-idx3-ubyte.gz"}) {
    Tensor back = read_idx(dir.file(name));
    EXPECT_EQ(back.shape(), t.shape());
    EXPECT_EQ(back.to_vector<uint8_t>(), t.to_vector<uint8_t>()) << name;
  }
}

TEST(Idx, BadMagicTypeOrRank) {
  EXPECT_LR_ERROR(decode_idx(std::string{1, 0, 8, 1, 0, 0, 0, 0}, "m.idx"), "m.idx", "not an IDX file");
  EXPECT_LR_ERROR(decode_idx(std::string{0, 0, 7, 1, 0, 0, 0, 0}, "m.idx"), "unknown element type byte 0x07");
  EXPECT_LR_ERROR(decode_idx(std::string{0, 0, 8, 0}, "m.idx"), "rank 0 is outside");
  EXPECT_LR_ERROR(decode_idx(std::string{0, 0, 8, 40}, "m.idx"), "rank 40 is outside");
}

TEST(Idx, TruncatedFilesNameTheFileAndWhatIsMissing) {
  EXPECT_LR_ERROR(decode_idx(std::string{0, 0}, "m.idx"), "m.idx", "truncated", "magic");
  EXPECT_LR_ERROR(decode_idx(header(0x08, {2, 3}).substr(0, 9), "m.idx"), "truncated", "dimensions");
  EXPECT_LR_ERROR(decode_idx(header(0x08, {2, 3}) + "abcd", "m.idx"), "truncated", "[2, 3] u8 data", "needs 6 bytes",
                  "only 4");
  TempDir dir;
  std::string bytes = encode_idx(u8_tensor({100, 28, 28}));
  std::string raw = dir.file("cut-idx3-ubyte");
  write_bytes(raw, bytes.substr(0, bytes.size() - 100));
  EXPECT_LR_ERROR(read_idx(raw), raw);  // the header now promises more than the file holds
  // A gzip file cut in the middle of its stream.
  std::string gz = dir.file("cut.gz");
  write_gz(gz, bytes);
  std::string zipped = read_bytes(gz);
  write_bytes(gz, zipped.substr(0, zipped.size() / 2));
  EXPECT_LR_ERROR(read_idx(gz), gz, "truncated");
  // Cut inside the 8-byte gzip trailer: every data byte is there, but the stream is incomplete.
  write_bytes(gz, zipped.substr(0, zipped.size() - 3));
  EXPECT_LR_ERROR(read_idx(gz), gz);
}

TEST(Idx, CorruptGzipIsAnError) {
  TempDir dir;
  std::string gz = dir.file("bad.gz");
  write_gz(gz, encode_idx(u8_tensor({50, 50})));
  std::string zipped = read_bytes(gz);
  zipped[zipped.size() - 6] ^= 0x55;  // inside the CRC-32 of the trailer
  write_bytes(gz, zipped);
  EXPECT_LR_ERROR(read_idx(gz), gz, "gzip");
}

TEST(Idx, LyingHeadersAreRefused) {
  // Claims 60000x28x28 bytes with a handful present: refused before allocating 47 MB.
  EXPECT_LR_ERROR(decode_idx(header(0x08, {60000, 28, 28}) + "abc", "m.idx"), "promises", "[60000, 28, 28]");
  // Huge dimensions whose product overflows 64 bits.
  EXPECT_LR_ERROR(decode_idx(header(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu}), "m.idx"), "overflow");
  // More bytes than the header describes.
  EXPECT_LR_ERROR(decode_idx(header(0x08, {2}) + "abc", "m.idx"), "1 bytes follow", "lying");
  TempDir dir;
  std::string gz = dir.file("long.gz");
  write_gz(gz, header(0x08, {2, 2}) + std::string(1000, 'x'));
  EXPECT_LR_ERROR(read_idx(gz), gz, "at least 64 bytes follow");
}

TEST(Idx, EmptyDimensionIsAValidEmptyTensor) {
  Tensor t = decode_idx(header(0x08, {0, 28}), "m.idx");
  EXPECT_EQ(t.shape(), (Shape{0, 28}));
}

TEST(Idx, MissingFileNamesThePath) {
  TempDir dir;
  EXPECT_LR_ERROR(read_idx(dir.file("absent.gz")), "absent.gz", "cannot open");
  EXPECT_LR_ERROR(encode_idx(Tensor::ones({2}, DType::I64)), "i64 has no IDX type");
}

}  // namespace
}  // namespace lowrank
