// Input written to break the readers: nesting deep enough to overflow a recursive printer, values
// too long to repeat in a message, headers of many tensors, sizes that overflow, empty splits,
// lying token-cache counts, and integer tensors offered as weights.
#include <gtest/gtest.h>

#include <cstring>

#include "core/io/dataloader.h"
#include "core/io/json_util.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "core/ops/einsum_equation.h"
#include "core/size_check.h"
#include "io_test_util.h"
#include "models/gpt2/text_data.h"
#include "nn/layers.h"

using namespace lowrank;
using namespace lowrank::testing_io;

namespace {

std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string nested(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

// The message of the lowrank::Error `f` throws ("" and a test failure when it does not).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no lowrank::Error";
  return "";
}

}  // namespace

TEST(HostileJson, DepthIsBoundedBeforeParsing) {
  EXPECT_NO_THROW(io::check_json_depth(nested(io::kMaxJsonDepth), "x"));
  EXPECT_LR_ERROR(io::check_json_depth(nested(io::kMaxJsonDepth + 1), "x"), "x: JSON nested deeper than 64 levels");
  // Brackets inside strings (escaped quotes too) are text, not nesting.
  EXPECT_NO_THROW(io::check_json_depth("[\"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"]", "x"));
  EXPECT_LR_ERROR(io::parse_json(nested(100000), "config"), "config: JSON nested deeper");
}

TEST(HostileJson, ErrorsRepeatOnlyAnExcerptOfTheInput) {
  const std::string long_string = "\"" + std::string(1 << 20, 'x');  // unterminated: nlohmann quotes it
  const std::string msg = error_of([&] { io::parse_json(long_string, "config"); });
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 1000u);
  EXPECT_EQ(io::excerpt(std::string(100, 'a'), 10), "aaaaaaaaaa... (100 bytes)");
  EXPECT_EQ(io::excerpt("\xC3\xA9\xC3\xA9", 3), "\xC3\xA9... (4 bytes)");   // never half a character
  EXPECT_EQ(io::json_excerpt(nlohmann::json("\xff")), "\"\xEF\xBF\xBD\"");  // invalid UTF-8 replaced, no throw
}

TEST(HostileJson, AnyErrorMessageIsBounded) {
  const std::string msg = error_of([] { LR_FAIL("{}", std::string(100000, 'y')); });
  EXPECT_LT(msg.size(), 2200u);
  EXPECT_NE(msg.find("(100000 bytes)"), std::string::npos);
}

TEST(HostileSafetensors, DeepNestingInTheHeaderOrMetadataIsOneError) {
  TempDir dir;
  const std::string path = dir.file("deep.safetensors");
  write_bytes(path, safetensors_bytes("{\"t\":" + nested(100000) + "}"));
  EXPECT_LR_ERROR(io::load_safetensors(path), path, "nested deeper than 64");
  write_bytes(path, safetensors_bytes("{\"__metadata__\":{\"a\":" + nested(60000) + "}}"));
  EXPECT_LR_ERROR(io::load_safetensors(path), "nested deeper than 64");
}

TEST(HostileSafetensors, LongValuesAreCutInMessages) {
  TempDir dir;
  const std::string path = dir.file("long.safetensors");
  write_bytes(path, safetensors_bytes("{\"t\":{\"dtype\":\"" + std::string(200000, 'Q') +
                                      "\",\"shape\":[],\"data_offsets\":[0,0]}}"));
  const std::string msg = error_of([&] { io::load_safetensors(path); });
  EXPECT_NE(msg.find("unsupported dtype"), std::string::npos) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 2200u);
  write_bytes(path, safetensors_bytes("{\"t\":{\"dtype\":\"F32\",\"shape\":[" + std::string(100000, '1') +
                                      "],\"data_offsets\":[0,0]}}"));
  EXPECT_LT(error_of([&] { io::load_safetensors(path); }).size(), 2200u);
}

TEST(HostileSafetensors, DuplicateKeysAreFoundAtAnyDepth) {
  TempDir dir;
  const std::string path = dir.file("dup.safetensors");
  write_bytes(path, safetensors_bytes("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}"));
  EXPECT_LR_ERROR(io::load_safetensors(path), "names 'a' twice");
  // The same key in two different objects is no duplicate.
  write_bytes(path, safetensors_bytes("{\"__metadata__\":{\"t\":\"x\"},\"t\":{\"dtype\":\"F32\",\"shape\":[0],"
                                      "\"data_offsets\":[0,0]}}"));
  EXPECT_EQ(io::load_safetensors(path).tensors.size(), 1u);
}

TEST(HostileSafetensors, ManyTensorsLoad) {
  // 20k tensors took 1.9 s (quadratic header parsing) and 50k 15 s; now both are linear.
  TempDir dir;
  const std::string path = dir.file("many.safetensors");
  constexpr int kTensors = 20000;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i)
    header += (i ? ",\"" : "\"") + std::to_string(i) + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" +
              std::to_string(i) + "," + std::to_string(i + 1) + "]}";
  header += "}";
  write_bytes(path, safetensors_bytes(header, std::string(kTensors, 'z')));
  const io::SafetensorsFile f = io::load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), static_cast<size_t>(kTensors));
  EXPECT_EQ(f.tensors.at("19999").data<uint8_t>()[0], 'z');
}

TEST(HostileSizes, ElementAndByteCountsAreChecked) {
  EXPECT_EQ(shape_numel({3, 0, 5}), 0);
  EXPECT_LR_ERROR(shape_numel({int64_t{1} << 62, 4}), "more elements than a 64-bit count holds");
  EXPECT_LR_ERROR(shape_numel({int64_t{1} << 62, 4, 0}), "more elements");  // a later 0 does not hide it
  EXPECT_LR_ERROR(shape_numel({2, -1}), "negative dimension");
  EXPECT_LR_ERROR(checked_nbytes(int64_t{1} << 62, 8, "empty"), "empty: ", "overflow");
  // 2^62 floats wrapped to 0 bytes before; now no allocation is attempted.
  EXPECT_LR_ERROR(Tensor::empty({int64_t{1} << 62}, DType::F32), "overflow");
}

TEST(HostileData, EmptySplitsAreErrorsAndAHugeBatchIsOneBatch) {
  EXPECT_LR_ERROR(io::DataLoader({Tensor::zeros({0, 4})}, {.batch_size = 8}), "holds no samples");
  io::DataLoader huge({Tensor::zeros({10, 4})}, {.batch_size = INT64_MAX});
  EXPECT_EQ(huge.num_batches(), 1);  // (n + b - 1) / b overflowed to a negative count
}

TEST(HostileData, TokenCacheWithImpossibleCountsIsNotTrusted) {
  TempDir dir;
  const std::string path = dir.file("tokens.bin");
  auto write_cache = [&](int64_t documents, int64_t val_documents, int64_t text_bytes) {
    models::gpt2::TokenData d;
    d.key = 77;
    d.train = {5, 1, 2, 5, 3};
    d.val = {5, 4};
    d.documents = documents, d.val_documents = val_documents, d.text_bytes = text_bytes;
    models::gpt2::write_token_cache(path, d, 0);
  };
  models::gpt2::TokenData out;
  std::string why;
  write_cache(3, 1, 40);
  ASSERT_TRUE(models::gpt2::read_token_cache(path, 77, out, why)) << why;
  EXPECT_EQ(out.documents, 3);
  for (auto [docs, val, bytes] : std::initializer_list<std::array<int64_t, 3>>{
           {-5, 1, 40}, {3, -1, 40}, {3, 4, 40}, {3, 1, -40}, {0, 0, 40}, {100, 1, 40}}) {
    write_cache(docs, val, bytes);
    EXPECT_FALSE(models::gpt2::read_token_cache(path, 77, out, why)) << docs << " " << val << " " << bytes;
    EXPECT_NE(why.find("document counts are impossible"), std::string::npos) << why;
  }
}

TEST(HostileWeights, IntegerOrNonFiniteTensorsAreRefusedByName) {
  nn::Dense layer(3, 2);
  auto state = layer.state_dict();
  auto ints = state;
  ints.at("kernel") = Tensor::zeros({2, 3}, DType::I32);
  EXPECT_LR_ERROR(layer.load_state_dict(ints), "tensor 'kernel' is i32", "f16, bf16, f32 or f64");
  auto nans = state;
  nans.at("bias") = Tensor::from_vector(std::vector<float>{0.0f, NAN}, {2});
  EXPECT_LR_ERROR(layer.load_state_dict(nans), "tensor 'bias' holds a NaN or infinite value (element 1)");
  auto f64 = state;
  f64.at("kernel") = Tensor::ones({2, 3}, DType::F64);  // widening or narrowing a float is fine
  EXPECT_NO_THROW(layer.load_state_dict(f64));
}

TEST(HostileEinsum, EquationsAreParsedOrRefused) {
  const EinsumEquation e = parse_einsum_equation(" ab , bc ");
  EXPECT_EQ(e.in[0], "ab");
  EXPECT_EQ(e.in[1], "bc");
  EXPECT_EQ(e.out, "ac");
  EXPECT_LR_ERROR(parse_einsum_equation("ab,bc,cd->ad"), "names 3 operand(s)");
  EXPECT_LR_ERROR(parse_einsum_equation("a1,b->ab"), "invalid character '1'");
  EXPECT_LR_ERROR(parse_einsum_equation("ab,b->z"), "output index 'z'");
  EXPECT_LR_ERROR(parse_einsum_equation("ab,b->a->a"), "more than one '->'");
}
