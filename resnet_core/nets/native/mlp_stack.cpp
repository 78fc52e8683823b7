// The walk of an MLP's block stack (resnet_core/nets/mlp_stack.py: _forward and _backward), in C++.
//
// The Python walk calls ATen kernels one by one; at 1002 layers the interpreter between them was a
// quarter of a training step. This is the same walk over the same kernels, called in the same order
// with the same arguments (at::linear, at::native_batch_norm, at::relu, at::add, and backward the two
// mm's of a linear layer in autograd's layouts, at::threshold_backward,
// at::native_batch_norm_backward), so the result is bit for bit the Python walk's (and autograd's):
// tests/test_native.py checks it. Only uniform stacks come here (every block alike, identity
// shortcuts); the rest stay with the Python walk.
//
// Tensors are passed flat: layer i of the stack is weights[i], with biases[i] (where there is no BN)
// or bn_weight[i], bn_bias[i], running_mean[i], running_var[i]; a block is `layers_per_block` layers.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

namespace {

using at::Tensor;
using at::TensorList;

struct Stack {
  TensorList weights, biases, bn_weight, bn_bias, running_mean, running_var;
  double momentum, eps;
  int64_t per_block;
  bool pre, residual;

  bool has_norm() const { return !bn_weight.empty(); }
  int64_t layers() const { return static_cast<int64_t>(weights.size()); }

  Tensor linear(const Tensor& x, int64_t i) const {
    return has_norm() ? at::linear(x, weights[i]) : at::linear(x, weights[i], biases[i]);
  }

  // BN in training mode; what the backward needs goes to `saved` (input, mean, invstd).
  Tensor norm(const Tensor& h, int64_t i, std::vector<Tensor>& saved) const {
    auto out = at::native_batch_norm(h, bn_weight[i], bn_bias[i], running_mean[i], running_var[i], true, momentum, eps);
    saved.push_back(h);
    saved.push_back(std::get<1>(out));
    saved.push_back(std::get<2>(out));
    return std::get<0>(out);
  }
};

// Returns [output, then what the backward needs, in order]; with `probe`, also every layer's
// response, and each residual block's branch and skip (as three more lists, by their counts).
std::tuple<Tensor, std::vector<Tensor>, std::vector<Tensor>, std::vector<Tensor>, std::vector<Tensor>> forward(
    const Tensor& input, TensorList weights, TensorList biases, TensorList bn_weight, TensorList bn_bias,
    TensorList running_mean, TensorList running_var, double momentum, double eps, int64_t per_block, bool pre,
    bool residual, bool probe) {
  const Stack s{weights, biases, bn_weight, bn_bias, running_mean, running_var, momentum, eps, per_block, pre, residual};
  std::vector<Tensor> saved, responses, branches, skips;
  saved.reserve(s.layers() * 5);
  Tensor x = input;
  for (int64_t start = 0; start < s.layers(); start += per_block) {
    Tensor h = x;
    for (int64_t j = 0; j < per_block; ++j) {
      const int64_t i = start + j;
      if (pre) {
        h = at::relu(s.has_norm() ? s.norm(h, i, saved) : h);
        saved.push_back(h);  // the ReLU's result is the linear layer's input
        h = s.linear(h, i);
      } else {
        saved.push_back(h);
        h = s.linear(h, i);
        if (s.has_norm()) h = s.norm(h, i, saved);
      }
      if (probe) responses.push_back(h);
      if (!pre && j < per_block - 1) {
        h = at::relu(h);
        saved.push_back(h);
      }
    }
    if (residual) {
      if (probe) {
        branches.push_back(h);
        skips.push_back(x);
      }
      h = at::add(x, h);
    }
    if (!pre) {
      h = at::relu(h);
      saved.push_back(h);
    }
    x = h;
  }
  return {x, saved, responses, branches, skips};
}

// The gradient at the stack's input; each parameter's gradient is set as its .grad (added to it
// where there is one). Consumes `saved` from the back, as the forward filled it.
Tensor backward(const Tensor& grad, TensorList saved, TensorList weights, TensorList biases, TensorList bn_weight,
                TensorList bn_bias, TensorList running_mean, TensorList running_var, double eps, int64_t per_block,
                bool pre, bool residual) {
  const Stack s{weights, biases, bn_weight, bn_bias, running_mean, running_var, 0.0, eps, per_block, pre, residual};
  int64_t top = static_cast<int64_t>(saved.size());
  auto take = [&]() -> const Tensor& { return saved[--top]; };
  auto give = [](const Tensor& param, const Tensor& g) {
    Tensor& slot = const_cast<Tensor&>(param).mutable_grad();
    if (slot.defined()) {
      slot.add_(g);
    } else {
      slot = g;
    }
  };
  auto linear_backward = [&](const Tensor& g, int64_t i, const Tensor& x) {
    give(weights[i], g.t().mm(x));
    if (!s.has_norm()) give(biases[i], g.sum_to_size(biases[i].sizes()));
    return g.mm(weights[i]);
  };
  auto norm_backward = [&](const Tensor& g, int64_t i) {
    const Tensor& invstd = take();
    const Tensor& mean = take();
    const Tensor& h = take();
    auto out = at::native_batch_norm_backward(g, h, bn_weight[i], running_mean[i], running_var[i], mean, invstd, true,
                                              eps, {true, true, true});
    give(bn_weight[i], std::get<1>(out));
    give(bn_bias[i], std::get<2>(out));
    return std::get<0>(out);
  };
  Tensor g = grad;
  for (int64_t start = s.layers() - per_block; start >= 0; start -= per_block) {
    if (!pre) g = at::threshold_backward(g, take(), 0);
    Tensor g_skip;
    if (residual) g_skip = g;
    for (int64_t j = per_block - 1; j >= 0; --j) {
      const int64_t i = start + j;
      if (pre) {
        const Tensor& r = take();  // the ReLU's result, the linear layer's input
        g = at::threshold_backward(linear_backward(g, i, r), r, 0);
        if (s.has_norm()) g = norm_backward(g, i);
      } else {
        if (j < per_block - 1) g = at::threshold_backward(g, take(), 0);
        if (s.has_norm()) g = norm_backward(g, i);
        g = linear_backward(g, i, take());
      }
    }
    if (residual) g = at::add(g, g_skip);
  }
  return g;
}

// Blocks [first, last) of the stack without autograd's bookkeeping (an evaluation, a lesion study):
// the modules' own calls, at::batch_norm as BatchNorm1d makes it (running statistics, or batch
// statistics with `momentum` in training mode), at::relu, at::linear, at::add.
Tensor infer(const Tensor& input, TensorList weights, TensorList biases, TensorList bn_weight, TensorList bn_bias,
             TensorList running_mean, TensorList running_var, double momentum, double eps, int64_t per_block,
             bool pre, bool residual, bool training, int64_t first, int64_t last) {
  const Stack s{weights, biases, bn_weight, bn_bias, running_mean, running_var, momentum, eps, per_block, pre, residual};
  auto norm = [&](const Tensor& h, int64_t i) {
    return at::batch_norm(h, bn_weight[i], bn_bias[i], running_mean[i], running_var[i], training, momentum, eps, true);
  };
  Tensor x = input;
  for (int64_t block = first; block < last; ++block) {
    Tensor h = x;
    for (int64_t j = 0; j < per_block; ++j) {
      const int64_t i = block * per_block + j;
      if (pre) {
        h = s.linear(at::relu(s.has_norm() ? norm(h, i) : h), i);
      } else {
        h = s.linear(h, i);
        if (s.has_norm()) h = norm(h, i);
        if (j < per_block - 1) h = at::relu(h);
      }
    }
    if (residual) h = at::add(x, h);
    x = pre ? h : at::relu(h);
  }
  return x;
}

}  // namespace

TORCH_LIBRARY(residual_lab, m) {
  m.def("mlp_stack_infer(Tensor x, Tensor[] weights, Tensor[] biases, Tensor[] bn_weight, Tensor[] bn_bias, "
        "Tensor[] running_mean, Tensor[] running_var, float momentum, float eps, int per_block, bool pre, "
        "bool residual, bool training, int first, int last) -> Tensor",
        &infer);
  m.def("mlp_stack_forward(Tensor x, Tensor[] weights, Tensor[] biases, Tensor[] bn_weight, Tensor[] bn_bias, "
        "Tensor[] running_mean, Tensor[] running_var, float momentum, float eps, int per_block, bool pre, "
        "bool residual, bool probe) -> (Tensor, Tensor[], Tensor[], Tensor[], Tensor[])",
        &forward);
  m.def("mlp_stack_backward(Tensor grad, Tensor[] saved, Tensor[] weights, Tensor[] biases, Tensor[] bn_weight, "
        "Tensor[] bn_bias, Tensor[] running_mean, Tensor[] running_var, float eps, int per_block, bool pre, "
        "bool residual) -> Tensor",
        &backward);
}
