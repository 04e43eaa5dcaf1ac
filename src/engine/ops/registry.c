/*
 * The operator registry: one row per ONNX operator of the default domain, sorted by name,
 * with its input and output counts (checked when the graph is built), its kernels (infer,
 * prepare, exec, exported by the family files in ops/ and declared in engine_int.h) and how
 * the planner treats it. An operator missing here is refused at load time (veil__engine_graph_build
 * names every one). A new operator is one more row; a new family adds its file's kernels.
 *
 * If, Loop and Scan count what they take once their subgraphs are lifted or captured
 * (ir/subgraph.c): If reads its condition and every branch output, Loop and Scan their own
 * inputs and then the outer values their body reads. They have no kernels: their plan_step
 * and run_step (ops/control.c) plan and run them.
 *
 * The counts cover opsets 7 to 21 (ONNX's operator schemas; optional slots count, and an
 * omitted optional input in the middle is an empty name, which still counts). Where a count
 * changed between opsets (Slice, Pad, Resize, Squeeze, Unsqueeze, the reductions) the range
 * covers every supported version. A node outside its range is refused at load: kernels read
 * their inputs by position.
 */
#include "engine_int.h"

#include <string.h>

/* One line per operator, so that the table reads and diffs as a table. */
/* clang-format off */
static const struct veil__engine_op_def k_ops[] = {
    {.name = "Abs", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Acos", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Acosh", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Add", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "And", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "ArgMax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_argmax_infer, .exec = veil__engine_argmax_exec},
    {.name = "ArgMin", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_argmax_infer, .exec = veil__engine_argmax_exec},
    {.name = "Asin", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Asinh", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Atan", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Atanh", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "AveragePool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_pool_infer, .exec = veil__engine_pool_exec},
    {.name = "BatchNormalization", .min_in = 5, .max_in = 5, .min_out = 1, .max_out = 5, .infer = veil__engine_bn_infer, .exec = veil__engine_bn_exec},
    {.name = "BitShift", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "BitwiseAnd", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "BitwiseNot", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "BitwiseOr", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "BitwiseXor", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "Cast", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_cast_infer, .exec = veil__engine_cast_exec},
    {.name = "CastLike", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_cast_infer, .exec = veil__engine_cast_exec},
    {.name = "Ceil", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Celu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "CenterCropPad", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_center_crop_pad_infer, .exec = veil__engine_pad_exec, .shape_inputs = 0x2},
    {.name = "Clip", .min_in = 1, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Col2Im", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_col2im_infer, .exec = veil__engine_col2im_exec, .shape_inputs = 0x6},
    {.name = "Concat", .min_in = 1, .max_in = 255, .min_out = 1, .max_out = 1, .infer = veil__engine_concat_infer, .exec = veil__engine_concat_exec},
    {.name = "Constant", .min_in = 0, .max_in = 0, .min_out = 1, .max_out = 1, .infer = veil__engine_constant_infer, .exec = veil__engine_constant_exec},
    {.name = "ConstantOfShape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_constant_of_shape_infer, .exec = veil__engine_constant_of_shape_exec, .shape_inputs = 0x1},
    {.name = "Conv", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_conv_infer, .prepare = veil__engine_conv_prepare, .exec = veil__engine_conv_exec, .no_fold = true},
    {.name = "ConvInteger", .min_in = 2, .max_in = 4, .min_out = 1, .max_out = 1, .infer = veil__engine_qconv_infer, .prepare = veil__engine_qprod_prepare, .exec = veil__engine_qprod_exec},
    {.name = "ConvTranspose", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_conv_infer, .prepare = veil__engine_conv_prepare, .exec = veil__engine_conv_exec, .no_fold = true},
    {.name = "Cos", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Cosh", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "CumSum", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_cumsum_infer, .exec = veil__engine_cumsum_exec},
    {.name = "DepthToSpace", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_depth_to_space_infer, .exec = veil__engine_depth_space_exec},
    {.name = "DequantizeLinear", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_dequantize_infer, .prepare = veil__engine_dequantize_prepare, .exec = veil__engine_dequantize_exec},
    {.name = "Div", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "Dropout", .min_in = 1, .max_in = 3, .min_out = 1, .max_out = 2, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec, .shape_inputs = 0x6},
    {.name = "DynamicQuantizeLinear", .min_in = 1, .max_in = 1, .min_out = 3, .max_out = 3, .infer = veil__engine_dynq_infer, .prepare = veil__engine_dynq_prepare, .exec = veil__engine_dynq_exec},
    {.name = "Einsum", .min_in = 1, .max_in = 255, .min_out = 1, .max_out = 1, .infer = veil__engine_einsum_infer, .exec = veil__engine_einsum_exec},
    {.name = "Elu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Equal", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "Erf", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Exp", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Expand", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec, .shape_inputs = 0x2},
    {.name = "EyeLike", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_eyelike_infer, .exec = veil__engine_eyelike_exec},
    {.name = "Flatten", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_flatten_infer, .view = true},
    {.name = "Floor", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "GRU", .min_in = 3, .max_in = 6, .min_out = 1, .max_out = 2, .infer = veil__engine_rnn_infer, .prepare = veil__engine_rnn_prepare, .exec = veil__engine_rnn_exec, .no_fold = true, .outputs_optional = true},
    {.name = "Gather", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_gather_infer, .exec = veil__engine_gather_exec},
    {.name = "GatherElements", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_gather_elements_infer, .exec = veil__engine_gather_elements_exec},
    {.name = "GatherND", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_gather_nd_infer, .exec = veil__engine_gather_nd_exec},
    {.name = "Gelu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Gemm", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_gemm_infer, .prepare = veil__engine_gemm_prepare, .exec = veil__engine_gemm_exec},
    {.name = "GlobalAveragePool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_gap_infer, .prepare = veil__engine_pool_prepare, .exec = veil__engine_gap_exec},
    {.name = "GlobalMaxPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_gap_infer, .prepare = veil__engine_pool_prepare, .exec = veil__engine_gap_exec},
    {.name = "Greater", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "GreaterOrEqual", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "GridSample", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_gridsample_infer, .exec = veil__engine_gridsample_exec},
    {.name = "GroupNormalization", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_groupnorm_infer, .exec = veil__engine_groupnorm_exec},
    {.name = "HardSigmoid", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "HardSwish", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Hardmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_hardmax_infer, .exec = veil__engine_hardmax_exec},
    {.name = "Identity", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec, .view = true},
    {.name = "If", .min_in = 3, .max_in = VEIL__ENGINE_IF_MAX_IO, .min_out = 1, .max_out = (VEIL__ENGINE_IF_MAX_IO - 1) / 2, .plan_step = veil__engine_if_plan, .run_step = veil__engine_if_run, .no_fold = true},
    {.name = "InstanceNormalization", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_norm_infer, .exec = veil__engine_norm_exec},
    {.name = "IsInf", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "IsNaN", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "LRN", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_lrn_infer, .exec = veil__engine_lrn_exec},
    {.name = "LSTM", .min_in = 3, .max_in = 8, .min_out = 1, .max_out = 3, .infer = veil__engine_rnn_infer, .prepare = veil__engine_rnn_prepare, .exec = veil__engine_rnn_exec, .no_fold = true, .outputs_optional = true},
    {.name = "LayerNormalization", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 3, .infer = veil__engine_ln_infer, .prepare = veil__engine_ln_prepare, .exec = veil__engine_ln_exec},
    {.name = "LeakyRelu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Less", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "LessOrEqual", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "Log", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "LogSoftmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_softmax_infer, .prepare = veil__engine_softmax_prepare, .exec = veil__engine_softmax_exec},
    {.name = "Loop", .min_in = 2, .max_in = VEIL__ENGINE_BODY_MAX_IO, .min_out = 1, .max_out = VEIL__ENGINE_BODY_MAX_IO, .plan_step = veil__engine_loop_plan, .run_step = veil__engine_body_run, .no_fold = true},
    {.name = "MatMul", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_matmul_infer_fused, .prepare = veil__engine_matmul_prepare, .exec = veil__engine_matmul_exec},
    {.name = "MatMulInteger", .min_in = 2, .max_in = 4, .min_out = 1, .max_out = 1, .infer = veil__engine_qmatmul_infer, .prepare = veil__engine_qprod_prepare, .exec = veil__engine_qprod_exec},
    {.name = "Max", .min_in = 1, .max_in = 255, .min_out = 1, .max_out = 1, .infer = veil__engine_variadic_infer, .exec = veil__engine_variadic_exec},
    {.name = "MaxPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 2, .infer = veil__engine_pool_infer, .prepare = veil__engine_pool_prepare, .exec = veil__engine_pool_exec},
    {.name = "Mean", .min_in = 1, .max_in = 255, .min_out = 1, .max_out = 1, .infer = veil__engine_variadic_infer, .exec = veil__engine_variadic_exec},
    {.name = "MeanVarianceNormalization", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_norm_infer, .exec = veil__engine_norm_exec},
    {.name = "Min", .min_in = 1, .max_in = 255, .min_out = 1, .max_out = 1, .infer = veil__engine_variadic_infer, .exec = veil__engine_variadic_exec},
    {.name = "Mish", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Mod", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "Mul", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .prepare = veil__engine_mul_prepare, .exec = veil__engine_binary_exec},
    {.name = "Neg", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Not", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "OneHot", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_onehot_infer, .exec = veil__engine_onehot_exec, .shape_inputs = 0x2},
    {.name = "Or", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "PRelu", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "Pad", .min_in = 1, .max_in = 4, .min_out = 1, .max_out = 1, .infer = veil__engine_pad_infer, .exec = veil__engine_pad_exec, .shape_inputs = 0xe},
    {.name = "Pow", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "QLinearConv", .min_in = 8, .max_in = 9, .min_out = 1, .max_out = 1, .infer = veil__engine_qconv_infer, .prepare = veil__engine_qprod_prepare, .exec = veil__engine_qprod_exec},
    {.name = "QLinearMatMul", .min_in = 8, .max_in = 8, .min_out = 1, .max_out = 1, .infer = veil__engine_qmatmul_infer, .prepare = veil__engine_qprod_prepare, .exec = veil__engine_qprod_exec},
    {.name = "QuantizeLinear", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_quantize_infer, .prepare = veil__engine_quantize_prepare, .exec = veil__engine_quantize_exec},
    {.name = "RNN", .min_in = 3, .max_in = 6, .min_out = 1, .max_out = 2, .infer = veil__engine_rnn_infer, .prepare = veil__engine_rnn_prepare, .exec = veil__engine_rnn_exec, .no_fold = true, .outputs_optional = true},
    {.name = "Range", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_range_infer, .exec = veil__engine_range_exec, .shape_inputs = 0x7},
    {.name = "Reciprocal", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "ReduceL1", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceL2", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceLogSum", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceLogSumExp", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceMax", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceMean", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceMin", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceProd", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceSum", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "ReduceSumSquare", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reduce_infer, .exec = veil__engine_reduce_exec, .shape_inputs = 0x2},
    {.name = "Relu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Reshape", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_reshape_infer, .shape_inputs = 0x2, .view = true},
    {.name = "Resize", .min_in = 1, .max_in = 4, .min_out = 1, .max_out = 1, .infer = veil__engine_resize_infer, .prepare = veil__engine_resize_prepare, .exec = veil__engine_resize_exec, .shape_inputs = 0xe},
    {.name = "Round", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Scan", .min_in = 1, .max_in = VEIL__ENGINE_BODY_MAX_IO, .min_out = 1, .max_out = VEIL__ENGINE_BODY_MAX_IO, .plan_step = veil__engine_scan_plan, .run_step = veil__engine_body_run, .no_fold = true},
    {.name = "ScatterElements", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_scatter_elements_infer, .prepare = veil__engine_scatter_prepare, .exec = veil__engine_scatter_elements_exec},
    {.name = "ScatterND", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_scatter_nd_infer, .prepare = veil__engine_scatter_prepare, .exec = veil__engine_scatter_nd_exec},
    {.name = "Selu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Shape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_shape_infer, .exec = veil__engine_shape_exec},
    {.name = "Shrink", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Sigmoid", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Sign", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Sin", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Sinh", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Size", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_size_infer, .exec = veil__engine_size_exec},
    {.name = "Slice", .min_in = 1, .max_in = 5, .min_out = 1, .max_out = 1, .infer = veil__engine_slice_infer, .exec = veil__engine_slice_exec, .shape_inputs = 0x1e},
    {.name = "Softmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_softmax_infer, .prepare = veil__engine_softmax_prepare, .exec = veil__engine_softmax_exec},
    {.name = "Softplus", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Softsign", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "SpaceToDepth", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_space_to_depth_infer, .exec = veil__engine_depth_space_exec},
    {.name = "Split", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 255, .infer = veil__engine_split_infer, .exec = veil__engine_split_exec, .shape_inputs = 0x2},
    {.name = "Sqrt", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Squeeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_squeeze_infer, .shape_inputs = 0x2, .view = true},
    {.name = "Sub", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "Sum", .min_in = 1, .max_in = 255, .min_out = 1, .max_out = 1, .infer = veil__engine_variadic_infer, .exec = veil__engine_variadic_exec},
    {.name = "Tan", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Tanh", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "ThresholdedRelu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_unary_infer, .exec = veil__engine_unary_exec},
    {.name = "Tile", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_tile_infer, .exec = veil__engine_tile_exec, .shape_inputs = 0x2},
    {.name = "TopK", .min_in = 1, .max_in = 2, .min_out = 2, .max_out = 2, .infer = veil__engine_topk_infer, .exec = veil__engine_topk_exec, .shape_inputs = 0x2},
    {.name = "Transpose", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1, .infer = veil__engine_transpose_infer, .prepare = veil__engine_transpose_prepare, .exec = veil__engine_transpose_exec},
    {.name = "Trilu", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_trilu_infer, .exec = veil__engine_trilu_exec},
    {.name = "Unsqueeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_unsqueeze_infer, .shape_inputs = 0x2, .view = true},
    /* Loaded as a Resize (ir/legacy.c rewrites it before planning). */
    {.name = "Upsample", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1, .max_opset = 9},
    {.name = "Where", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
    {.name = "Xor", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1, .infer = veil__engine_binary_infer, .exec = veil__engine_binary_exec},
};
/* clang-format on */

#define N_OPS (sizeof(k_ops) / sizeof(k_ops[0]))

const struct veil__engine_op_def *veil__engine_op_find(const char *name)
{
    for (size_t i = 0; i < N_OPS; i++)
        if (strcmp(k_ops[i].name, name) == 0)
            return &k_ops[i];
    return NULL;
}

int veil__engine_op_index(const char *name)
{
    const struct veil__engine_op_def *op = veil__engine_op_find(name);
    /* A row without kernels (Upsample) names no operator a node can keep. */
    return op == NULL || (op->infer == NULL && op->plan_step == NULL) ? -1 : (int)(op - k_ops);
}

const struct veil__engine_op_def *veil__engine_op_get(int op)
{
    VEIL_ASSERT(op >= 0 && (size_t)op < N_OPS &&
                (k_ops[op].infer != NULL || k_ops[op].plan_step != NULL));
    return &k_ops[op];
}

bool veil__engine_op_known(const char *name, int64_t opset)
{
    const struct veil__engine_op_def *op = veil__engine_op_find(name);
    return op != NULL && (op->max_opset == 0 || opset <= op->max_opset);
}

size_t veil__engine_op_count(void)
{
    return N_OPS;
}

const struct veil__engine_op_def *veil__engine_op_at(size_t i)
{
    VEIL_ASSERT(i < N_OPS);
    return &k_ops[i];
}
