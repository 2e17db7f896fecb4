// φ grids of two saved adapters against numpy's (tests/reference/similarity_reference.py):
// the goal "φ values equal numpy's on the same saved adapters to 1e-5".
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "analysis/similarity.h"
#include "core/io/safetensors.h"

using namespace lowrank;
using namespace lowrank::analysis;

namespace {

// The bound. Both sides run the SVD in f64 from the same f32 values, so the observed
// difference is near 1e-15; 1e-5 still catches any wrong basis, side or index.
constexpr double kPhiTol = 1e-5;

const std::string kDir = std::string(LOWRANK_FIXTURES) + "/similarity/";

nlohmann::json fixture() {
  std::ifstream in(kDir + "similarity_phi.json");
  EXPECT_TRUE(in.good()) << "missing fixture; run tests/reference/similarity_reference.py";
  return nlohmann::json::parse(in);
}

void expect_grid_equals(const SimilarityGrid& g, const nlohmann::json& ref) {
  ASSERT_EQ(g.rows, static_cast<int64_t>(ref.size()));
  for (int64_t i = 0; i < g.rows; ++i) {
    ASSERT_EQ(g.cols, static_cast<int64_t>(ref[i].size()));
    for (int64_t j = 0; j < g.cols; ++j)
      EXPECT_NEAR(g.at(i + 1, j + 1), ref[i][j].get<double>(), kPhiTol) << "phi(" << i + 1 << ", " << j + 1 << ")";
  }
}

TEST(SimilarityReference, MatchesNumpyOnSavedAdapters) {
  nlohmann::json ref = fixture();
  auto f1 = io::load_safetensors(kDir + ref["file1"].get<std::string>());
  auto f2 = io::load_safetensors(kDir + ref["file2"].get<std::string>());
  const Tensor a1 = f1.tensors.at("fc2.lora_A.weight"), b1 = f1.tensors.at("fc2.lora_B.weight");
  const Tensor a2 = f2.tensors.at("base_model.model.fc2.lora_A.weight");
  const Tensor b2 = f2.tensors.at("base_model.model.fc2.lora_B.weight");
  ASSERT_EQ(a1.shape(), (Shape{ref["r1"].get<int64_t>(), 24}));
  ASSERT_EQ(a2.shape(), (Shape{ref["r2"].get<int64_t>(), 24}));
  expect_grid_equals(adapter_similarity(a1.to(DType::F64), a2.to(DType::F64)), ref["phi_right"]);
  expect_grid_equals(adapter_similarity(b1.to(DType::F64), b2.to(DType::F64), AdapterSide::LeftOfB), ref["phi_left"]);
  // The f32 path (SVD in f32) also stays within the bound on these small matrices.
  expect_grid_equals(adapter_similarity(a1, a2), ref["phi_right"]);
}

}  // namespace
