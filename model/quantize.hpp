// Quantized checkpoints: which tensors are quantized, how they are stored in safetensors, and
// `xmesh quantize` (docs/quantization.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/matmul.hpp"
#include "model/safetensors_writer.hpp"

namespace xmesh::model {

/// What to quantize, and to which format (q8, q4 or fp8).
struct quantize_options {
  kernels::weight_format format = kernels::weight_format::q8;
  bool experts_only = false;
};

/// Parses "q8", "q4" or "fp8"; throws naming the accepted ones.
kernels::weight_format parse_quant_format(const std::string& name);

/// Whether `options` quantize the tensor `name` of `shape`: linear weights (2-D, all but the
/// embeddings, routers and the shared-expert gate; with experts_only only routed experts) whose
/// shape holds whole groups (32 columns) or, for fp8, whole 128 x 128 blocks.
bool quantizes(const std::string& name, const std::vector<int64_t>& shape,
               const quantize_options& options);

/// How one tensor is stored: plain in `plain`, or, when quantized, its codes (`name`: I8 for q8,
/// U8 for q4, F8_E4M3 for fp8) followed by its scales (`name_scale` F16, or fp8's
/// `name_scale_inv` F32). `values` are read when the tensors are written.
std::vector<stored_tensor> store_tensor(const tensor_spec& values, kernels::dtype plain,
                                        const quantize_options& options);

/// config.json's `quantization_config` for `options`, as JSON text.
std::string quantization_config_json(const quantize_options& options);

/// What `quantize_model` did.
struct quantize_report {
  int64_t quantized = 0, kept = 0;  // tensors
  int64_t bytes_before = 0, bytes_after = 0;
};

/// Writes to `out` the model of `source` with its weights quantized per `options`: config.json
/// gains quantization_config, tokenizer files are copied, plain tensors keep their type. Throws
/// one clear line when `source` is already quantized or unreadable.
quantize_report quantize_model(const std::filesystem::path& source,
                               const std::filesystem::path& out, const quantize_options& options);

}  // namespace xmesh::model
