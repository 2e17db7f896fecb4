// EinsumDense: Keras' shape analysis (_analyze_einsum_string) and the layer built on core's einsum.
#include "nn/einsum_dense.h"

#include <algorithm>
#include <cctype>

#include "core/ops.h"

namespace lowrank::nn {
namespace {

bool all_letters(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
}

void check_unique(const std::string& eq, const std::string& spec, const char* what) {
  for (size_t i = 0; i < spec.size(); ++i)
    LR_CHECK(spec.find(spec[i], i + 1) == std::string::npos,
             "EinsumDense: equation '{}' repeats axis '{}' in the {} spec '{}' (traces are not supported)", eq,
             std::string(1, spec[i]), what, spec);
}

}  // namespace

EinsumDenseShapes analyze_einsum_dense(const std::string& equation, const Shape& input_shape,
                                       const Shape& user_output_shape, const std::string& bias_axes) {
  const std::string& eq = equation;
  auto bad_form = [&]() {
    LR_FAIL(
        "EinsumDense: invalid equation '{}': equations must be in the form [X],[Y]->[Z], ...[X],[Y]->...[Z] or "
        "[X]...,[Y]->[Z]... with letters for axes",
        eq);
  };
  size_t comma = eq.find(','), arrow = eq.find("->");
  if (comma == std::string::npos || arrow == std::string::npos || arrow < comma) bad_form();
  std::string in = eq.substr(0, comma), w = eq.substr(comma + 1, arrow - comma - 1), out = eq.substr(arrow + 2);
  const std::string dots = "...";
  enum { kNone, kLeft, kRight } elide = kNone;
  if (in.starts_with(dots) && out.starts_with(dots)) {
    elide = kLeft;
    in = in.substr(3), out = out.substr(3);
  } else if (in.ends_with(dots) && out.ends_with(dots)) {
    elide = kRight;
    in = in.substr(0, in.size() - 3), out = out.substr(0, out.size() - 3);
    if (in.size() < 2 || out.size() < 2) bad_form();  // Keras: [X]... needs two letters before the dots
  }
  if (!all_letters(in) || !all_letters(w) || !all_letters(out)) bad_form();
  check_unique(eq, in, "input");
  check_unique(eq, w, "kernel");
  check_unique(eq, out, "output");

  // Expand "..." into letters the equation does not use.
  const int64_t rank = static_cast<int64_t>(input_shape.size());
  Shape out_wo_batch = user_output_shape;
  if (elide != kNone) {
    int64_t elided = rank - static_cast<int64_t>(in.size());
    LR_CHECK(elided >= 1,
             "EinsumDense: equation '{}' elides {} axes of input shape {} (the '...' must cover at least one)", eq,
             elided, input_shape);
    std::string fresh;
    const std::string used = in + w + out;
    for (char c : std::string("zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA"))
      if (static_cast<int64_t>(fresh.size()) < elided && used.find(c) == std::string::npos) fresh += c;
    LR_CHECK(static_cast<int64_t>(fresh.size()) == elided,
             "EinsumDense: equation '{}' with input shape {} needs more axis letters than exist", eq, input_shape);
    if (elide == kLeft) {
      in = fresh + in, out = fresh + out;
      // Keras: output_shape names neither the batch axis nor the elided ones; the elided axes
      // after the batch follow the input.
      out_wo_batch.insert(out_wo_batch.begin(), static_cast<size_t>(elided - 1), -1);
    } else {
      in = in + fresh, out = out + fresh;
      out_wo_batch.insert(out_wo_batch.end(), static_cast<size_t>(elided), -1);
    }
  }
  EinsumDenseShapes r;
  r.input_spec = in, r.kernel_spec = w, r.output_spec = out;
  r.equation = in + "," + w + "->" + out;

  LR_CHECK(rank == static_cast<int64_t>(in.size()),
           "EinsumDense: equation '{}' has {} input axes ('{}') but the input shape {} has {}", eq, in.size(), in,
           input_shape, rank);
  LR_CHECK(
      out_wo_batch.size() + 1 == out.size(),
      "EinsumDense: equation '{}' has {} output axes ('{}'): output_shape must give the {} after the batch axis{}, "
      "got {}",
      eq, out.size(), out, out.size() - 1, elide == kNone ? "" : " and the elided ones", user_output_shape);
  for (int64_t s : input_shape)
    LR_CHECK(s >= -1, "EinsumDense: input shape {} has a negative size (use -1 for unknown)", input_shape);
  for (int64_t s : out_wo_batch)
    LR_CHECK(s >= -1, "EinsumDense: output_shape {} has a negative size (use -1 for unknown)", user_output_shape);

  // The full output shape: the batch axis first, sizes shared with the input filled from it.
  r.output = out_wo_batch;
  r.output.insert(r.output.begin(), input_shape.empty() ? -1 : input_shape[0]);
  for (size_t i = 0; i < out.size(); ++i) {
    size_t at = in.find(out[i]);
    if (at == std::string::npos) continue;
    int64_t from_in = input_shape[at];
    if (r.output[i] != -1 && from_in != -1 && r.output[i] != from_in)
      LR_FAIL(
          "EinsumDense: equation '{}': input shape {} and output shape {} do not match at shared axis '{}' ({} vs {})",
          eq, input_shape, r.output, std::string(1, out[i]), from_in, r.output[i]);
    if (r.output[i] == -1) r.output[i] = from_in;
  }
  for (char c : out)
    LR_CHECK(in.find(c) != std::string::npos || w.find(c) != std::string::npos,
             "EinsumDense: equation '{}': output axis '{}' has no corresponding axis in the input spec '{}' or the "
             "kernel spec '{}'",
             eq, std::string(1, c), in, w);

  for (char c : w) {
    size_t ai = in.find(c), ao = out.find(c);
    int64_t size = -1;
    if (ai != std::string::npos) {
      size = input_shape[ai];
      LR_CHECK(size >= 0,
               "EinsumDense: equation '{}': kernel axis '{}' takes its size from input axis {} of {}, which "
               "is unknown (-1)",
               eq, std::string(1, c), ai, input_shape);
    } else if (ao != std::string::npos) {
      size = r.output[ao];
      LR_CHECK(size >= 0,
               "EinsumDense: equation '{}': kernel axis '{}' takes its size from output axis {} of {}, "
               "which output_shape leaves unknown",
               eq, std::string(1, c), ao, r.output);
    } else {
      LR_FAIL(
          "EinsumDense: equation '{}': kernel axis '{}' has no match in the input spec '{}' or the output spec "
          "'{}'; the kernel must be fully specified",
          eq, std::string(1, c), in, out);
    }
    r.kernel.push_back(size);
  }

  if (!bias_axes.empty()) {
    LR_CHECK(all_letters(bias_axes), "EinsumDense: bias_axes '{}' must be letters of the output spec '{}'", bias_axes,
             out);
    check_unique(eq, bias_axes, "bias_axes");
    size_t first = out.size();
    for (char c : bias_axes) {
      size_t at = out.find(c);
      LR_CHECK(at != std::string::npos, "EinsumDense: bias axis '{}' is not part of the output spec '{}' of '{}'",
               std::string(1, c), out, eq);
      first = std::min(first, at);
    }
    for (size_t i = first; i < out.size(); ++i) {
      if (bias_axes.find(out[i]) == std::string::npos) {
        r.bias.push_back(1);
        continue;
      }
      LR_CHECK(r.output[i] >= 0, "EinsumDense: bias axis '{}' of '{}' has an unknown size in output shape {}",
               std::string(1, out[i]), eq, r.output);
      r.bias.push_back(r.output[i]);
    }
  }
  return r;
}

EinsumDense::EinsumDense(const std::string& equation, const Shape& output_shape, const Shape& input_shape,
                         const EinsumDenseOptions& o, Generator& gen)
    : equation_(equation), activation_(o.activation) {
  shapes_ = analyze_einsum_dense(equation, input_shape, output_shape, o.bias_axes);
  kernel_ = register_parameter(
      "kernel", initialize(o.kernel_init, shapes_.kernel, keras_fans(shapes_.kernel), gen, o.dtype, o.device));
  if (!shapes_.bias.empty())
    bias_ = register_parameter("bias",
                               initialize(o.bias_init, shapes_.bias, keras_fans(shapes_.bias), gen, o.dtype, o.device));
}

Tensor EinsumDense::forward(const Tensor& x) {
  const std::string& in = shapes_.input_spec;
  LR_CHECK(x.defined() && x.dim() == static_cast<int64_t>(in.size()),
           "EinsumDense '{}': input {} must have {} axes ('{}')", equation_, x.defined() ? x.shape() : Shape{},
           in.size(), in);
  for (size_t i = 0; i < in.size(); ++i) {
    size_t k = shapes_.kernel_spec.find(in[i]);
    if (k != std::string::npos)
      LR_CHECK(x.shape()[i] == shapes_.kernel[k], "EinsumDense '{}': input {} axis '{}' must be {} to match kernel {}",
               equation_, x.shape(), std::string(1, in[i]), shapes_.kernel[k], shapes_.kernel);
  }
  Tensor y = einsum(shapes_.equation, x, kernel_);
  for (size_t i = 1; i < shapes_.output.size(); ++i)
    LR_CHECK(shapes_.output[i] < 0 || y.shape()[i] == shapes_.output[i],
             "EinsumDense '{}': output {} does not match the expected {}", equation_, y.shape(), shapes_.output);
  if (bias_.defined()) y = add(y, bias_);
  return apply_activation(activation_, y);
}

std::string EinsumDense::describe() const {
  return detail::format("EinsumDense({}, kernel {}, {})", equation_, shapes_.kernel, activation_name(activation_));
}

}  // namespace lowrank::nn
