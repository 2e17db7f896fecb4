// The one list of ops: every autograd node and every "no kernel for <op>" message names its op
// from here. Add an op here first.
#pragma once
#include <cstdint>

// clang-format off
#define LOWRANK_OP_LIST(X) \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Maximum) X(Minimum) \
  X(AddScalar) X(MulScalar) X(PowScalar) X(RSubScalar) X(RDivScalar) \
  X(Neg) X(Exp) X(Log) X(Sqrt) X(Rsqrt) X(Tanh) X(Sigmoid) X(Relu) X(Gelu) X(Abs) \
  X(Compare) X(MaskedFill) \
  X(Sum) X(Mean) X(Max) X(Argmax) \
  X(Matmul) \
  X(Reshape) X(Permute) X(Slice) X(Expand) X(Concat) X(Contiguous) X(Copy) X(Cast) X(ToDevice) \
  X(Softmax) X(LogSoftmax) X(CrossEntropy) X(LayerNorm) X(Embedding) X(Dropout) X(Einsum) \
  X(LoraLinear) X(Attention) X(AdamStep) X(Fill) X(Random) X(Svd)
// clang-format on

namespace lowrank {

enum class OpKind : uint16_t {
#define LOWRANK_X(name) name,
  LOWRANK_OP_LIST(LOWRANK_X)
#undef LOWRANK_X
      Count
};

const char* op_name(OpKind k);  // "Add", "Matmul", ...

}  // namespace lowrank
