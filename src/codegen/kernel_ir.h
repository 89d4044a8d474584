// Backend-neutral kernel IR for a fused elementwise region. A region iterates
// over one static shape; each input is a tensor broadcast (NumPy rules, right
// aligned) to that shape; instructions are ds elementwise ops over SSA registers
// (inputs take registers 0..N-1, instruction i writes register N+i), each with
// the dtype the op inferred, so every backend rounds where the unfused graph
// rounds. Nothing here assumes a CPU: a CUDA emitter maps the same instructions
// to device math. float16/bfloat16 registers hold values of their type: a
// backend may compute them in float32 but rounds every such instruction's result
// to the register's type (as the unfused low-precision kernels do), and loads
// and stores them in their 16-bit format.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ds/graph.h"

namespace ds::codegen {

struct KernelInst {
  std::string op;         // a ds elementwise op name ("add", "gelu", "cast", ...)
  AttrMap attrs;          // the node's attributes (float, string or dtype values)
  std::vector<int> args;  // registers read
  DType dtype;            // the register's type
};

// A final reduction of one register over the innermost axis ("sum", "mean" or
// "max", NaN-propagating), as in softmax and normalization rows. Its result is
// the region's last output, of `shape` without (or, with keepdims, with 1 for)
// the last extent.
struct KernelReduce {
  std::string op;
  int reg = -1;
  bool keepdims = false;
};

// Row reductions inside a region (in addition to the trailing `reduce`): an
// instruction whose op is "sum", "mean" or "max" (no attributes, one operand of
// its own dtype) reduces its operand over the innermost axis, NaN-propagating.
// Its register is a *row register*: one value per row, of row_shape() (the
// iteration shape with the last extent 1). An elementwise instruction is a row
// register too when it reads at least one row register and otherwise only row
// registers and row-constant inputs (shape [] or last extent 1): it runs once
// per row. Any other instruction reading a row register broadcasts it along the
// row, so "x + res -> mean/var -> normalize -> *gamma + beta -> gelu" is one
// region. Outputs may be row registers (results of row_shape()). A backend runs
// a row in passes (see row_plan.h): pass p accumulates the reductions whose
// operand reads row registers of pass p-1 at most, recomputing the elementwise
// values it needs, and stores the outputs that need nothing later.
struct KernelIR {
  Shape shape;                     // iteration shape (static)
  std::vector<TensorType> inputs;  // each broadcastable to `shape`
  std::vector<KernelInst> insts;
  std::vector<int> outputs;  // registers written out, each with `shape`
  std::optional<KernelReduce> reduce;

  // Types of the region's results: outputs, then the reduction's.
  std::vector<TensorType> result_types() const;

  int num_registers() const { return static_cast<int>(inputs.size() + insts.size()); }
  DType register_dtype(int r) const;
  // Row reductions: the iteration shape with the last extent 1; which registers
  // hold one value per row (per register, inputs false); the shape of register r
  // (an input's own, row_shape() for row registers, else `shape`).
  Shape row_shape() const;
  std::vector<bool> row_registers() const;
  Shape register_shape(int r) const;
  bool has_row_reductions() const;  // any reduction among the instructions
  // Stable text form ("region v1 ..."): the `fused` node's attribute and the cache key.
  std::string str() const;
  uint64_t hash() const;  // FNV-1a of str()
  // Checks register numbering, arities, broadcasting and dtypes; throws ValueError.
  void verify() const;
};

// Parses str()'s form; throws ValueError naming the bad line.
KernelIR parse_kernel_ir(const std::string& text);

// parse_kernel_ir() memoized per text (regions are parsed by infer and by kernels
// on every call); the result lives as long as the process.
const KernelIR& cached_kernel_ir(const std::string& text);

// Ops a region may contain (every backend emitter handles all of them), and the
// dtypes its values may have (float32, float64, bool, and float16/bfloat16,
// which only the CUDA emitter compiles: see uses_low_precision).
bool is_kernel_op(const std::string& op);
bool is_kernel_reduction(const std::string& op);  // sum, mean, max (also as instructions)
bool is_kernel_dtype(DType t);
bool is_low_precision(DType t);                   // float16, bfloat16
bool uses_low_precision(const KernelIR& ir);      // an input or register of either

// Evaluates the region with each op's reference kernel (float64 math, rounded to
// each register's dtype like the unfused graph). Inputs are concrete tensors of
// the region's input types; returns one tensor per result (result_types()).
std::vector<Tensor> interpret(const KernelIR& ir, const std::vector<Tensor>& inputs);

}  // namespace ds::codegen
