// Reverse-mode automatic differentiation.
//
// Over graphs: grad()/vjp() append the backward computation to the SAME graph,
// built from each OpDef's VJP rule, so forward, backward and whatever follows
// (an optimizer update) compile into one executable.
//
// Over functions (JAX/MLX style): grad(fn)/value_and_grad(fn) trace `fn` on
// symbolic placeholders typed like the concrete arguments, compile the result
// once per argument signature and run it.
#pragma once

#include <functional>
#include <utility>
#include <vector>

#include "ds/graph.h"

namespace ds {

// d(loss)/d(wrt[i]) for a scalar (one-element) floating `loss`, as values of `graph`.
// A wrt value that `loss` does not depend on gets zeros. Integer and bool values
// carry no gradient; wrt values must be floating.
std::vector<Tensor> grad(const Graph& graph, const Tensor& loss, const std::vector<Tensor>& wrt);

// Vector-Jacobian product: sum_k cotangents[k] . d(outputs[k])/d(wrt[i]).
std::vector<Tensor> vjp(const Graph& graph, const std::vector<Tensor>& outputs,
                        const std::vector<Tensor>& cotangents, const std::vector<Tensor>& wrt);

// A function of tensors to a scalar loss, for the function transforms.
using ScalarFn = std::function<Tensor(const std::vector<Tensor>&)>;
using GradFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
using ValueAndGradFn =
    std::function<std::pair<Tensor, std::vector<Tensor>>(const std::vector<Tensor>&)>;

// Gradients of fn w.r.t. the arguments numbered `argnums` (default: the first).
GradFn grad(ScalarFn fn, std::vector<int> argnums = {0});
// The value of fn and its gradients, from one compiled executable.
ValueAndGradFn value_and_grad(ScalarFn fn, std::vector<int> argnums = {0});

}  // namespace ds
