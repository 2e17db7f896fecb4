// safetensors: round trips for every dtype, metadata, the Python package's byte layout, atomic
// writes, and every kind of malformed file rejected with a message that says what is wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/io/file_util.h"
#include "core/io/half.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "support/errors.h"
#include "support/files.h"

namespace lowrank {
namespace {

using io::load_safetensors;
using io::save_safetensors;
using test::read_bytes;
using test::TempDir;
using test::write_bytes;

// 8-byte little-endian header length + header + data.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string floats_le(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  size_t i = 0;
  for (float f : v) std::memcpy(&s[4 * i++], &f, 4);
  return s;
}

template <class T>
void expect_same(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(a.to_vector<T>(), b.to_vector<T>());
}

TEST(Safetensors, RoundTripsEveryStoredDtype) {
  TempDir dir;
  std::map<std::string, Tensor> ts;
  ts["f64"] = Tensor::from_vector(std::vector<double>{1.5, -2.25, 1e300, -0.0, 3.141592653589793, 7}, {2, 3});
  ts["f32"] = Tensor::from_vector(std::vector<float>{1.5f, -2.25f, 1e30f, 0.1f}, {4, 1});
  ts["i64"] = Tensor::from_vector(std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX}, {2, 2});
  std::vector<int32_t> i32{INT32_MIN, 7, INT32_MAX};
  ts["i32"] = Tensor::from_data<int32_t>(std::span<const int32_t>(i32), {3});
  std::vector<uint8_t> u8{0, 1, 128, 255, 9};
  ts["u8"] = Tensor::from_data<uint8_t>(std::span<const uint8_t>(u8), {5});
  ts["scalar"] = Tensor::scalar(42.0, DType::F32);
  ts["empty"] = Tensor::empty({2, 0}, DType::F32);
  std::string path = dir.file("all.safetensors");
  save_safetensors(path, ts);
  io::SafetensorsFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), ts.size());
  EXPECT_TRUE(f.metadata.empty());
  expect_same<double>(f.tensors.at("f64"), ts["f64"]);
  expect_same<float>(f.tensors.at("f32"), ts["f32"]);
  expect_same<int64_t>(f.tensors.at("i64"), ts["i64"]);
  expect_same<int32_t>(f.tensors.at("i32"), ts["i32"]);
  expect_same<uint8_t>(f.tensors.at("u8"), ts["u8"]);
  expect_same<float>(f.tensors.at("scalar"), ts["scalar"]);
  EXPECT_EQ(f.tensors.at("empty").shape(), (Shape{2, 0}));
  EXPECT_TRUE(std::signbit(f.tensors.at("f64").to_vector<double>()[3]));  // -0 kept bit for bit
}

// Halves are stored as such and widened to f32 on load; values exactly representable survive.
TEST(Safetensors, HalvesAreWidenedToF32OnLoad) {
  TempDir dir;
  const std::vector<float> values{0.0f,           -0.0f,          1.0f,
                                  -2.5f,          0.099975586f,   65504.0f,
                                  6.1035156e-05f, 5.9604645e-08f, std::numeric_limits<float>::infinity()};
  for (DType dt : {DType::F16, DType::BF16}) {
    Tensor h = Tensor::empty({static_cast<int64_t>(values.size())}, dt);
    auto* bits = static_cast<uint16_t*>(h.raw_data());
    for (size_t i = 0; i < values.size(); ++i)
      bits[i] = dt == DType::F16 ? io::f32_to_f16(values[i]) : io::f32_to_bf16(values[i]);
    std::string path = dir.file("half.safetensors");
    save_safetensors(path, {{"h", h}});
    EXPECT_NE(read_bytes(path).find(dt == DType::F16 ? "\"F16\"" : "\"BF16\""), std::string::npos);
    Tensor back = load_safetensors(path).tensors.at("h");
    ASSERT_EQ(back.dtype(), DType::F32);
    std::vector<float> got = back.to_vector<float>();
    for (size_t i = 0; i < values.size(); ++i) {
      float want = dt == DType::F16 ? io::f16_to_f32(bits[i]) : io::bf16_to_f32(bits[i]);
      EXPECT_EQ(std::memcmp(&got[i], &want, 4), 0) << i;
    }
    if (dt == DType::F16) {  // all of these are exact f16 values
      for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(got[i], values[i]) << i;
    }
  }
}

TEST(Safetensors, MetadataRoundTrips) {
  TempDir dir;
  std::map<std::string, std::string> md{
      {"format", "pt"}, {"empty", ""}, {"unicode", "\xc3\xa9t\xc3\xa9 \"q\"\n"}, {"step", "1875"}};
  std::string path = dir.file("md.safetensors");
  save_safetensors(path, {{"x", Tensor::ones({2})}}, md);
  io::SafetensorsFile f = load_safetensors(path);
  EXPECT_EQ(f.metadata, md);
  save_safetensors(path, {}, md);  // metadata only, no tensors
  f = load_safetensors(path);
  EXPECT_TRUE(f.tensors.empty());
  EXPECT_EQ(f.metadata, md);
}

TEST(Safetensors, NonContiguousTensorsAreWrittenContiguous) {
  TempDir dir;
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = a.mT();  // [3, 2] view with strides (1, 3)
  ASSERT_FALSE(t.is_contiguous());
  std::string path = dir.file("t.safetensors");
  save_safetensors(path, {{"t", t}});
  Tensor back = load_safetensors(path).tensors.at("t");
  EXPECT_EQ(back.shape(), (Shape{3, 2}));
  EXPECT_EQ(back.to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

// The header is padded with spaces to a multiple of 8 so the data section is 8-byte aligned.
TEST(Safetensors, WriterLayoutMatchesTheFormat) {
  TempDir dir;
  std::string path = dir.file("l.safetensors");
  save_safetensors(path, {{"b", Tensor::from_vector(std::vector<float>{1, 2}, {2})},
                          {"a", Tensor::from_vector(std::vector<double>{3}, {1})}});
  std::string bytes = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 8 + 8);
  std::string header = bytes.substr(8, n);
  EXPECT_NE(header.find("\"a\":{\"data_offsets\":[0,8],\"dtype\":\"F64\",\"shape\":[1]}"), std::string::npos) << header;
  EXPECT_NE(header.find("\"b\":{\"data_offsets\":[8,16],\"dtype\":\"F32\",\"shape\":[2]}"), std::string::npos)
      << header;
}

// Bytes as the Python `safetensors` package writes them: compact JSON, __metadata__ first, keys
// in its own order (not sorted), data_offsets before nothing in particular, space padding.
TEST(Safetensors, ReadsThePythonPackageLayout) {
  TempDir dir;
  std::string header =
      R"({"__metadata__":{"format":"pt"},"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
      R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string path = dir.file("py.safetensors");
  write_bytes(path, make_file(header, floats_le({0.5f, -1.0f, 1, 2, 3, 4})));
  io::SafetensorsFile f = load_safetensors(path);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.tensors.at("bias").to_vector<float>(), (std::vector<float>{0.5f, -1.0f}));
  EXPECT_EQ(f.tensors.at("weight").shape(), (Shape{2, 2}));
  EXPECT_EQ(f.tensors.at("weight").to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
}

// The fixture written by tests/reference/adam_reference.py mimics the Python package's writer.
TEST(Safetensors, ReadsTheReferenceScriptsFile) {
  io::SafetensorsFile f = load_safetensors(std::string(LOWRANK_FIXTURES) + "/optim/adam_reference.safetensors");
  EXPECT_EQ(f.metadata.at("generator"), "tests/reference/adam_reference.py");
  ASSERT_TRUE(f.tensors.count("init.f64.w"));
  EXPECT_EQ(f.tensors.at("init.f64.w").dtype(), DType::F64);
  EXPECT_EQ(f.tensors.at("init.f64.w").shape(), (Shape{3, 4}));
  EXPECT_EQ(f.tensors.at("grads.f32.b").shape(), (Shape{10, 4}));
  // f32 data is the rounding of the f64 data it was made from.
  std::vector<double> w64 = f.tensors.at("init.f64.w").to_vector<double>();
  std::vector<float> w32 = f.tensors.at("init.f32.w").to_vector<float>();
  for (size_t i = 0; i < w64.size(); ++i) EXPECT_EQ(w32[i], static_cast<float>(w64[i]));
}

TEST(Safetensors, SaveReplacesAtomicallyAndLeavesNoTemporaryFiles) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  save_safetensors(path, {{"x", Tensor::ones({3})}});
  save_safetensors(path, {{"y", Tensor::zeros({2})}});
  io::SafetensorsFile f = load_safetensors(path);
  EXPECT_EQ(f.tensors.size(), 1u);
  EXPECT_TRUE(f.tensors.count("y"));
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

// A writer that dies before commit (an exception) leaves the old file and no temporary behind.
TEST(Safetensors, AbandonedWriteKeepsTheOldFile) {
  TempDir dir;
  std::string path = dir.file("keep.bin");
  io::write_file_atomic(path, "old contents");
  std::string temp;
  {
    io::AtomicFileWriter w(path);
    temp = w.temp_path();
    w.write("new", 3);
    EXPECT_TRUE(std::filesystem::exists(temp));
  }
  EXPECT_FALSE(std::filesystem::exists(temp));
  EXPECT_EQ(read_bytes(path), "old contents");
  // An undefined tensor fails before anything is written.
  save_safetensors(dir.file("m.safetensors"), {{"x", Tensor::ones({1})}});
  EXPECT_LR_ERROR(save_safetensors(dir.file("m.safetensors"), {{"a", Tensor::ones({1})}, {"b", Tensor()}}),
                  "'b' is undefined");
  EXPECT_TRUE(load_safetensors(dir.file("m.safetensors")).tensors.count("x"));
}

TEST(Safetensors, WriteErrorsNameThePath) {
  TempDir dir;
  std::string missing = dir.file("no/such/folder/x.safetensors");
  EXPECT_LR_ERROR(save_safetensors(missing, {{"x", Tensor::ones({1})}}), missing, "does not exist");
  EXPECT_LR_ERROR(save_safetensors(dir.file("x.safetensors"), {{"__metadata__", Tensor::ones({1})}}),
                  "cannot be named __metadata__");
}

// ---- malformed files: each case is rejected with a message naming the file and the problem

class MalformedSafetensors : public ::testing::Test {
 protected:
  // Writes the file and expects load_safetensors to fail with the file's path and `what`.
  void expect_rejected(const std::string& bytes, std::initializer_list<std::string> what) {
    std::string path = dir_.file("bad.safetensors");
    write_bytes(path, bytes);
    try {
      load_safetensors(path);
      ADD_FAILURE() << "accepted a malformed file; expected: " << *what.begin();
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      for (const std::string& w : what) EXPECT_NE(msg.find(w), std::string::npos) << msg << "\nmissing: " << w;
    }
  }
  static std::string one(const std::string& entry, const std::string& data) {
    return make_file("{\"t\":" + entry + "}", data);
  }
  TempDir dir_;
};

TEST_F(MalformedSafetensors, FileShorterThanTheLengthField) {
  expect_rejected("", {"fewer than the 8-byte header length"});
  expect_rejected(std::string(7, '\0'), {"has 7 bytes"});
}

TEST_F(MalformedSafetensors, HeaderLengthPastTheEndOfTheFile) {
  std::string f = make_file("{}", "");
  f[0] = 100;  // claims 100 header bytes, 2 follow
  expect_rejected(f, {"header length 100 runs past the end of the file"});
  std::string huge(8, '\xff');
  expect_rejected(huge + "{}", {"runs past the end"});
}

TEST_F(MalformedSafetensors, BadJson) {
  expect_rejected(make_file("{\"t\": {\"dtype\": ", ""), {"not valid JSON"});
  expect_rejected(make_file("", ""), {"not valid JSON"});
  expect_rejected(make_file("{\"a\":1} trailing", ""), {"not valid JSON"});
  expect_rejected(make_file("{\"\xff\xfe\":{}}", ""), {"not valid JSON"});  // not UTF-8
}

TEST_F(MalformedSafetensors, HeaderThatIsNotAnObject) {
  expect_rejected(make_file("[1, 2]", ""), {"must be a JSON object", "array"});
  expect_rejected(make_file("\"t\"", ""), {"must be a JSON object", "string"});
  expect_rejected(make_file("7", ""), {"must be a JSON object", "number"});
  expect_rejected(make_file("null", ""), {"must be a JSON object"});
}

TEST_F(MalformedSafetensors, EntryThatIsNotAWellFormedObject) {
  expect_rejected(one("[1]", ""), {"tensor 't'", "expected an object"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1]})", "xxxx"), {"missing field 'data_offsets'"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1})", "xxxx"),
                  {"unexpected field 'extra'"});
}

TEST_F(MalformedSafetensors, UnknownOrUnsupportedDtype) {
  expect_rejected(one(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})", "xxxx"), {"unsupported dtype 'F33'"});
  expect_rejected(one(R"({"dtype":"I16","shape":[2],"data_offsets":[0,4]})", "xxxx"), {"unsupported dtype 'I16'"});
  expect_rejected(one(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})", "xxxx"), {"unsupported dtype 'f32'"});
  expect_rejected(one(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", "xxxx"), {"dtype must be a string"});
}

TEST_F(MalformedSafetensors, ShapeTypeErrors) {
  expect_rejected(one(R"({"dtype":"F32","shape":4,"data_offsets":[0,4]})", "xxxx"), {"shape must be an array"});
  expect_rejected(one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", "xxxx"),
                  {"shape must hold non-negative"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1.0],"data_offsets":[0,4]})", "xxxx"), {"shape must hold"});
  expect_rejected(one(R"({"dtype":"F32","shape":["1"],"data_offsets":[0,4]})", "xxxx"), {"shape must hold"});
  expect_rejected(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})", "xxxx"),
                  {"overflows"});
}

TEST_F(MalformedSafetensors, OffsetTypeErrors) {
  expect_rejected(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", "xxxx"), {"must be [begin, end]"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})", "xxxx"), {"must be [begin, end]"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1],"data_offsets":{"a":0}})", "xxxx"), {"must be [begin, end]"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})", "xxxx"), {"non-negative integers"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,"4"]})", "xxxx"), {"non-negative integers"});
  expect_rejected(one(R"({"dtype":"F32","shape":[0],"data_offsets":[4,0]})", "xxxx"), {"end before they begin"});
}

TEST_F(MalformedSafetensors, OffsetsThatDisagreeWithShapeTimesDtype) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})", "xxxx"),
                  {"hold 4 bytes but F32 [2] needs 8"});
  expect_rejected(one(R"({"dtype":"F64","shape":[1],"data_offsets":[0,4]})", "xxxx"), {"F64 [1] needs 8"});
}

TEST_F(MalformedSafetensors, OffsetsThatOverlap) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            std::string(12, 'x')),
                  {"'a'", "'b'", "overlap"});
}

TEST_F(MalformedSafetensors, OffsetsThatLeaveGaps) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            std::string(12, 'x')),
                  {"bytes [4, 8)", "belong to no tensor", "'b'"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})", std::string(8, 'x')),
                  {"bytes [0, 4)", "belong to no tensor"});
  expect_rejected(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})", std::string(6, 'x')),
                  {"bytes [4, 6)", "trailing data"});
}

TEST_F(MalformedSafetensors, OffsetsThatExceedTheData) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", "xxxx"),
                  {"tensor 't'", "run past the end of the data (4 bytes)"});
}

TEST_F(MalformedSafetensors, DuplicateNames) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            std::string(8, 'x')),
                  {"names 'a' twice"});
  expect_rejected(one(R"({"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]})", "xxxx"),
                  {"names 'dtype' twice"});
}

TEST_F(MalformedSafetensors, MetadataThatIsNotStrings) {
  expect_rejected(make_file(R"({"__metadata__":{"step":3}})", ""), {"__metadata__ 'step' must be a string"});
  expect_rejected(make_file(R"({"__metadata__":["a"]})", ""), {"__metadata__ must be an object"});
}

TEST(Safetensors, MissingFileOrFolderIsAClearError) {
  TempDir dir;
  EXPECT_LR_ERROR(load_safetensors(dir.file("nope.safetensors")), "cannot open", "nope.safetensors");
  EXPECT_LR_ERROR(load_safetensors(dir.path().string()), "is not a regular file");
}

TEST(Half, KnownConversions) {
  EXPECT_EQ(io::f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(io::f16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(io::f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(io::f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(io::f16_to_f32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_TRUE(std::isinf(io::f16_to_f32(0x7C00)));
  EXPECT_TRUE(std::isnan(io::f16_to_f32(0x7E00)));
  EXPECT_EQ(io::bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(io::bf16_to_f32(0xC0A0), -5.0f);
  EXPECT_EQ(io::f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(io::f32_to_f16(65520.0f), 0x7C00);  // halfway past the largest rounds to infinity
  EXPECT_EQ(io::f32_to_f16(65519.0f), 0x7BFF);
  EXPECT_EQ(io::f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie to even (down)
  EXPECT_EQ(io::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie to even (up)
  EXPECT_EQ(io::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);             // tie between 0 and the smallest: even
  EXPECT_EQ(io::f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);
  EXPECT_EQ(io::f32_to_f16(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(io::f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);  // tie to even
  EXPECT_EQ(io::f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(io::bf16_to_f32(io::f32_to_bf16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(io::f16_to_f32(io::f32_to_f16(std::nanf("")))));
}

// Every f16 value survives f16 -> f32 -> f16, and the nearest f16 of each f32 is found.
TEST(Half, ExhaustiveF16RoundTrip) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = io::f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(io::f32_to_f16(f), h) << std::hex << h;
  }
  // Between two neighbours a and b, a value 1/4 of the way is nearer a, 3/4 nearer b.
  for (uint32_t h = 0; h < 0x7BFF; h += 37) {
    float a = io::f16_to_f32(static_cast<uint16_t>(h)), b = io::f16_to_f32(static_cast<uint16_t>(h + 1));
    EXPECT_EQ(io::f32_to_f16(a + (b - a) * 0.25f), h);
    EXPECT_EQ(io::f32_to_f16(a + (b - a) * 0.75f), h + 1);
  }
}

}  // namespace
}  // namespace lowrank
