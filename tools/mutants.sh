#!/usr/bin/env bash
# Plants plausible bugs one at a time in a scratch copy of the working tree and checks that the
# tests catch each: a mutant the tests let through means a claim the tests do not back.
#
#   tools/mutants.sh            every mutant
#   tools/mutants.sh NAME...    only those (names below)
#
# Each mutant is one literal replacement in one file (the script fails if the text is gone, so
# a refactor cannot turn a mutant into a silent no-op) and the test targets that should catch
# it. Builds go to $CARGO_TARGET_DIR (default: the checkout's target/, so dependencies are
# reused); expect a few minutes per mutant on two cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# name | file | text | replacement | test targets (cargo test arguments)
mutants=(
  "linear-bn-bias-dropped|src/workflow/convert_module.rs|[self.out_features(), self.in_features()], [&weight, &bias], qparams, layer)|[self.out_features(), self.in_features()], [&weight, &vec![0.0; self.out_features()]], qparams, layer)|--test workflow --test pytorch_convert_layers"
  "conv-bn-bias-dropped|src/workflow/convert_module.rs|(bias[c] - mean[c] as f32) * sf[c] + beta[c]|(0.0 - mean[c] as f32) * sf[c] + beta[c]|--test workflow --test pytorch_convert_layers"
  "multiplier-in-f32|src/quant/requant.rs|(input_scale as f64 * weight_scale as f64 / output_scale as f64) as f32|input_scale * weight_scale / output_scale|--lib --test workflow"
  "shape-by-element-count|src/state_dict/reader.rs|Some(shape) if t.shape != shape =>|Some(shape) if t.numel() != shape.iter().product::<usize>() =>|--test workflow"
  "rounding-half-away-from-zero|src/quant/round.rs|if v.abs() < TWO_POW_23 { rounded } else { v }|if v.abs() < TWO_POW_23 { v.round() } else { v }|--lib --test fake_quant_golden"
  "zero-point-correction-flipped|src/kernels/int8/gemm.rs|.wrapping_sub(zx.wrapping_mul(rowsum))|.wrapping_add(zx.wrapping_mul(rowsum))|--test int8_kernels --test workflow"
  "syncbn-statistics-detached|src/nn/batch_norm.rs|p.to_device(&device))|p.detach().to_device(&device))|--test data_parallel"
  "observer-range-not-reduced|src/observer/stats.rs|    all_reduce_min_max(local_min_max(x, axis, known))|    local_min_max(x, axis, known)|--test data_parallel"
  "gradient-of-one-replica|src/train/data_parallel.rs|let sum = parts.into_iter()|let sum = parts.into_iter().take(1)|--test data_parallel"
  "lsq-backward-zero-point-as-forward|src/ops/learnable_fake_quant.rs|None => vec![per_tensor_backward_zero_point(z[0], qmin, qmax)],|None => z_fwd.clone(),|--test learnable_fake_quant_golden"
  "lsq-grad-factor-dropped|src/ops/learnable_fake_quant.rs|ScaleGradient::Every => (((q.clamp(qmin, qmax) - z) * s - x) * inv) * g,|ScaleGradient::Every => ((q.clamp(qmin, qmax) - z) * s - x) * inv,|--test learnable_fake_quant_golden"
  "learning-never-switched-on|src/train/mod.rs|model.enable_param_learning());|model.set_training(true));|--test cli train_with_a_learned_quantizer"
  "packed-sign-not-extended|src/quant/packing.rs|((field ^ sign).wrapping_sub(sign)) as i32 as i8|field as i32 as i8|--lib --test workflow"
  "percentile-is-min-max|src/observer/range_estimate.rs|let (lo_rank, hi_rank) = (rank(100.0 - p), rank(p));|let (lo_rank, hi_rank) = (0, last);|--lib"
  "histogram-linspace-rounded-twice|src/observer/histogram.rs|step.mul_add(i as f32, start)|start + step * i as f32|--test histogram_observer_golden"
  "histogram-upsample-by-8|src/observer/histogram.rs|const UPSAMPLE_RATE: usize = 16;|const UPSAMPLE_RATE: usize = 8;|--test histogram_observer_golden"
  "histc-bin-by-ratio-first|src/observer/histogram.rs|((v - left) * bins as f32 / (right - left)) as usize|((v - left) / (right - left) * bins as f32) as usize|--test histogram_observer_golden"
  "histogram-search-levels-ignored|src/observer/mod.rs|SearchLevels::QuantRange => (self.spec.range.span() + 1) as f64,|SearchLevels::QuantRange => 2f64.powi(self.spec.dtype.bits() as i32),|--test histogram_observer_golden"
  "pact-learns-inside-the-range|src/fake_quantize/learnable.rs|{ ScaleGradient::Clipped } else|{ ScaleGradient::Every } else|--test pact"
  "pact-factor-lsq|src/fake_quantize/learnable.rs|LearnedGradient::Pact => (1.0 / ((qmax as f64 - qmin as f64).powi(2))) as f32,|LearnedGradient::Pact => (1.0 / (qmax as f64 - qmin as f64)) as f32,|--test pact"
  "onnx-int4-never-chosen|src/qdq/graph.rs|self.int4_weights && bits_needed(weight) <= 4|self.int4_weights && bits_needed(weight) <= 3|--test onnx_export"
  "gpu-rounding-half-away-from-zero|src/ops/cube/fake_quant.rs|F::round(x * params[2 + 3 * channel])|F::floor(x * params[2 + 3 * channel] + F::new(0.5))|--features wgpu --test fake_quant_golden"
  "checkpoint-epochs-as-epoch|src/run/file.rs|metadata.insert(EPOCHS_KEY.into(), position.epochs.to_string());|metadata.insert(EPOCHS_KEY.into(), point.epochs_done.to_string());|--test run_files"
  "int8-conv-depth-axis-flipped|src/nn/quantized/conv.rs|let shape = [vec![n, o], [od, oh, ow][5 - D..].to_vec()].concat();|let shape = [vec![n, o], [oh, od, ow][5 - D..].to_vec()].concat();|--test int8_families --test int8_kernels"
  "same-padding-extra-element-before|src/nn/spatial_options.rs|(0, after - before)), PadMode::Constant(0.0))|(after - before, 0)), PadMode::Constant(0.0))|--test padding"
  "int8-kernel-drops-the-odd-same-element|src/kernels/padding.rs|if zeros { after[i] - before[i] } else { after[i] }|if zeros { 0 } else { after[i] }|--test padding"
  "transposed-from-float-keeps-weight-axis-0|src/nn/intrinsic/qat/conv_bn.rs|let qconfig = qconfig.with_weight_channel_axis(O::WEIGHT_CHANNEL_AXIS);|let qconfig = qconfig;|--test end_to_end_encoder_decoder"
  "convert-chain-drops-the-grid-at-a-relu|src/workflow/convert_chain.rs|self.grid = output.or(self.grid);|self.grid = output;|--test workflow"
  "onnx-pads-symmetric|src/qdq/graph.rs|ints(&[before, after].concat())|ints(&[before, before].concat())|--test padding"
  "onnx-reflect-pad-skipped|src/qdq/graph.rs|Ok((padded, vec![0; 2 * before.len()]))|Ok((input.to_string(), vec![0; 2 * before.len()]))|--test onnx_export"
  "int8-file-output-grid-as-input|src/workflow/int8_fields.rs|&qparams.output, out);|&qparams.input, out);|--test workflow"
  "int8-file-forgets-same-padding|src/workflow/kinds/conv.rs|{ Padding::Same } else { Padding::Explicit(explicit) }|{ Padding::Explicit(explicit) } else { Padding::Explicit(explicit) }|--test padding"
  "named-gradients-are-the-values|src/state_dict/params.rs|Param::initialized(param.id, grad)|Param::initialized(param.id, value.inner())|--test conv_bn_f64"
  "bn-module-ignores-train-mode|src/nn/qat_module.rs|self.bn.follow_mode(mode);|let _ = mode;|--test module_behaviour --test frozen_bn"
  "concat-zero-point-ignored|src/nn/quantized/concat.rs|(q as i32 - input.zero_point) as f32 * input.scale|(q as i32) as f32 * input.scale|--test end_to_end_encoder_decoder"
  "concat-deployment-not-requantized|src/workflow/qat_layer.rs|output.real(output.codes(t))|t|--test end_to_end_encoder_decoder"
  "spatial-axes-lifted-from-the-front|src/nn/quantized/conv.rs|out[3 - v.len()..].copy_from_slice(v);|out[..v.len()].copy_from_slice(v);|--test end_to_end_sequence --test int8_families"
  "conv-transpose-onnx-weights-along-axis-0|src/qdq/graph.rs|axis: O::WEIGHT_CHANNEL_AXIS, weight|axis: 0, weight|--test end_to_end_encoder_decoder"
  "volume-global-pool-count-off|src/workflow/kinds/pooling.rs|mean_of_sum(sum.cast(DType::F32), plane, g)|mean_of_sum(sum.cast(DType::F32), plane + 1, g)|--test end_to_end_volume"
  "hardswish-table-caps-at-five|src/nn/quantized/hardswish.rs|x * (x + 3.0).clamp(0.0, 6.0) / 6.0|x * (x + 3.0).clamp(0.0, 5.0) / 6.0|--test end_to_end_encoder_decoder"
  "bn-fold-gamma-zero-stays-approximate|src/nn/intrinsic/qat/bn_fold.rs|(BnFolding::Approximate, false) => self.approximate(op, with_relu),|(BnFolding::Approximate, _) => self.approximate(op, with_relu),|--test module_behaviour"
  "train-run-resume-point-dropped|src/train/mod.rs|self.resume = point;|let _ = point;|--test robustness"
  "onnx-weighted-output-on-the-input-grid|src/qdq/graph.rs|Ok(Wire { name, shape: node.shape, qparams: Some(qparams.output) })|Ok(Wire { name, shape: node.shape, qparams: Some(qparams.input) })|--test onnx_export"
  "conv1d-same-padding-after-dropped|src/nn/conv1d_options.rs|vec![Conv1dOptions::padding_after(self)]|vec![self.padding]|--test padding"
  "int8-dims-lifted-at-the-back|src/nn/quantized/conv.rs|out[7 - D..].copy_from_slice(&dims[2..]);|out[2..D].copy_from_slice(&dims[2..]);|--test int8_kernels --test workflow"
  "quantized-linear-in-out-swapped|src/workflow/convert_module.rs|quantized::Linear::new(i, o, Int8Weight::new(values, scale, zero_point), bias, qparams)|quantized::Linear::new(o, i, Int8Weight::new(values, scale, zero_point), bias, qparams)|--test workflow"
  "observer-child-not-read|src/state_dict/mod.rs|self.activation_post_process.read_state(&key, reader);|let _ = (&key, &reader);|--test workflow --test custom_model"
  "per-tensor-weights-flag-ignored|src/qconfig/builder.rs|per_tensor_weights => per_channel_weights = false,|per_tensor_weights => per_channel_weights = true,|--lib"
  "reflect-padding-as-wide-as-the-input-accepted|src/nn/spatial_options.rs|PaddingMode::Reflect && after[axis] >= size|PaddingMode::Reflect && after[axis] > size|--test int8_families --test module_behaviour --test padding"
  "int8-edited-weights-not-repacked|src/nn/quantized/conv_parts.rs|if packed.packs(&self.weight.values|if !packed.packs(&self.weight.values|--test int8_families"
  "transposed-row-zero-point-of-the-tap|src/kernels/int8/conv_transpose.rs|zero_point[row / taps]|zero_point[row % zero_point.len()]|--test int8_families"
  "transposed-output-padding-dropped|src/kernels/int8/conv_transpose.rs|+ output_padding[axis] + 1 - 2 * g.padding[axis]|+ 1 - 2 * g.padding[axis]|--test int8_families"
  "gemm-row-split-numbers-rows-across-groups|src/kernels/int8/gemm.rs|let (rb, offset) = (absolute - group * blocks, absolute * block);|let (rb, offset) = (absolute - group * blocks * 0, absolute * block);|--test int8_families --test int8_kernels"
  "transposed-row-runs-leave-gaps|src/kernels/int8/conv_transpose.rs|group_blocks.clone().step_by(run)|group_blocks.clone().step_by(run + 1)|--test int8_families"
  "onnx-transposed-output-padding-dropped|src/qdq/graph.rs|ints(&own(&output_padding))|ints(&own(&[0; 3]))|--test end_to_end_encoder_decoder"
  "transposed-weight-channel-ignores-groups|src/nn/quantized/conv.rs|(c / (shape[0] / window.groups)) * shape[1] + j|(c / shape[0]) * shape[1] + j|--test int8_families"
  "int8-packing-ignores-row-length|src/kernels/int8/gemm.rs|self.groups == groups && self.k == k && self.zx == zx|self.groups == groups && self.zx == zx|--test int8_families"
)

selected=("$@")
caught=0
missed=()
for entry in "${mutants[@]}"; do
  IFS='|' read -r name file text replacement targets <<<"$entry"
  if ((${#selected[@]})) && [[ ! " ${selected[*]} " == *" $name "* ]]; then
    continue
  fi
  rm -rf "$scratch/tree"
  mkdir -p "$scratch/tree"
  # The working tree as it is (committed or not), without build outputs.
  (cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$scratch/tree")
  python3 - "$scratch/tree/$file" "$text" "$replacement" <<'EOF'
import sys
path, text, replacement = sys.argv[1:]
source = open(path).read()
if source.count(text) != 1:
    sys.exit(f"{path}: expected the text exactly once, found it {source.count(text)} times: {text}")
open(path, "w").write(source.replace(text, replacement))
EOF
  echo "== $name: $file"
  # shellcheck disable=SC2086
  if (cd "$scratch/tree" && cargo test --release --no-fail-fast $targets >"$scratch/$name.log" 2>&1); then
    echo "   MISSED: the tests passed with the bug planted"
    missed+=("$name")
  else
    # Every failing test, each target run to its end: which independent checks see the bug.
    failing=$(grep -E "^test .* FAILED$|^error(\[|:)" "$scratch/$name.log" | sed 's/^test //; s/ \.\.\. FAILED$//' || true)
    echo "   caught by:"
    echo "${failing:-(the build failed)}" | sed 's/^/     /'
    caught=$((caught + 1))
  fi
done

echo "$caught caught, ${#missed[@]} missed${missed:+: ${missed[*]}}"
((${#missed[@]} == 0))
