// The parsed form of a two-operand einsum equation, apart from the op so that tests and the fuzzer
// can reach the parser without tensors.
#pragma once
#include <array>
#include <string>

namespace lowrank {

struct EinsumEquation {
  std::array<std::string, 2> in;  // the operands' indices, whitespace removed
  std::string out;                // explicit after "->", else NumPy's implicit output
};

// Throws lowrank::Error naming the equation for anything einsum does not take: not exactly two
// operands, a character that is not a letter, an index repeated within a part, an ellipsis, more
// than one arrow, an output index that no operand has.
EinsumEquation parse_einsum_equation(const std::string& equation);

}  // namespace lowrank
