#!/usr/bin/env python3
"""PyTorch's side of `burn-qat bench`: the same cases, the same work, the same JSON line.

    python bench/torch_reference.py <case|all> [--iters N] [--warmup N] [--threads T]

prints, per case, {"case": ..., "median_ms": ..., "min_ms": ..., "max_ms": ..., "iters": ...,
"threads": ...}, and for the training steps "peak_mb" last. Needs only torch (CPU). Every case
mirrors cli/src/bench/ in the Rust crate; the models copy the layer structure of
src/models/float_models.rs and src/models/mobilenet.rs.
"""

import argparse
import warnings
import copy
import statistics
import sys
import time

import torch
import torch.ao.nn.intrinsic.qat as nniqat
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub, convert, fuse_modules_qat, get_default_qat_qconfig, prepare_qat
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action, MemoryProfile

# torch.ao.quantization's deprecation notices go to stderr on every run; they say nothing here.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

CASES = [
    "convbnrelu2d",
    "dwconvbnrelu2d",
    "linearrelu",
    "qat-step-lenet",
    "float-step-lenet",
    "qat-step-resnet-tiny",
    "float-step-resnet-tiny",
    "qat-step-mobilenetv2-tiny",
    "float-step-mobilenetv2-tiny",
    "int8-infer-lenet-b1",
    "f32-infer-lenet-b1",
    "int8-infer-lenet-b32",
    "f32-infer-lenet-b32",
    "int8-infer-mobilenetv2-tiny-b1",
    "f32-infer-mobilenetv2-tiny-b1",
    "int8-infer-mobilenetv2-tiny-b32",
    "f32-infer-mobilenetv2-tiny-b32",
    "int8-infer-convtranspose2d-b8",
]

BATCH = 64  # training-step batch
LR = 0.01
CALIBRATION_BATCHES = 4  # training-mode forwards before convert, so observers have seen data


# ---------------------------------------------------------------------------------------------
# Models: src/models/float_models.rs, layer for layer (3x3 convs with padding 1 and no bias,
# BatchNorm2d, ReLU, 2x2 max pooling, Linear with bias).

def conv(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class LeNet(nn.Module):
    """models::lenet: two Conv-BN-ReLU blocks with max pooling, Linear-ReLU, a linear head."""

    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.conv1, self.bn1, self.relu1, self.pool1 = conv(1, 16), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2)
        self.conv2, self.bn2, self.relu2, self.pool2 = conv(16, 32), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc1, self.relu3 = nn.Linear(32 * 7 * 7, 128), nn.ReLU()
        self.fc2 = nn.Linear(128, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.dequant(self.fc2(x))

    fuse_groups = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["fc1", "relu3"]]


class Block(nn.Module):
    """A basic block: conv_a, bn_a, relu_a, conv_b, bn_b, identity shortcut, ReLU after the
    addition (FloatFunctional, so prepare_qat puts the output fake quant after it, as ours)."""

    def __init__(self, c):
        super().__init__()
        self.conv_a, self.bn_a, self.relu_a = conv(c, c), nn.BatchNorm2d(c), nn.ReLU()
        self.conv_b, self.bn_b = conv(c, c), nn.BatchNorm2d(c)
        self.add = FloatFunctional()

    def forward(self, x):
        y = self.relu_a(self.bn_a(self.conv_a(x)))
        y = self.bn_b(self.conv_b(y))
        return self.add.add_relu(y, x)


class ResNetTiny(nn.Module):
    """models::resnet_tiny: stem, block(8), widen to 16, block(16), Linear-ReLU, a linear head."""

    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.stem, self.stem_bn, self.stem_relu, self.pool1 = conv(1, 8), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2, 2)
        self.block1 = Block(8)
        self.widen, self.widen_bn, self.widen_relu, self.pool2 = conv(8, 16), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2)
        self.block2 = Block(16)
        self.flatten = nn.Flatten()
        self.fc1, self.relu = nn.Linear(16 * 7 * 7, 64), nn.ReLU()
        self.fc2 = nn.Linear(64, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool1(self.stem_relu(self.stem_bn(self.stem(x))))
        x = self.block1(x)
        x = self.pool2(self.widen_relu(self.widen_bn(self.widen(x))))
        x = self.block2(x)
        x = self.relu(self.fc1(self.flatten(x)))
        return self.dequant(self.fc2(x))

    fuse_groups = [
        ["stem", "stem_bn", "stem_relu"],
        ["block1.conv_a", "block1.bn_a", "block1.relu_a"],
        ["block1.conv_b", "block1.bn_b"],
        ["widen", "widen_bn", "widen_relu"],
        ["block2.conv_a", "block2.bn_a", "block2.relu_a"],
        ["block2.conv_b", "block2.bn_b"],
        ["fc1", "relu"],
    ]


class InvertedResidual(nn.Module):
    """A MobileNetV2 block as in src/models/mobilenet.rs: 1x1 expand Conv-BN-ReLU, 3x3 depthwise
    Conv-BN-ReLU (stride here), 1x1 project Conv-BN, and an identity shortcut added back (no ReLU;
    FloatFunctional, so prepare_qat gives the sum its output fake quant as ours) when the stride
    is 1 and the widths match."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.expand, self.expand_bn, self.expand_relu = nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU()
        self.dw = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.dw_bn, self.dw_relu = nn.BatchNorm2d(hidden), nn.ReLU()
        self.project, self.project_bn = nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.residual = stride == 1 and cin == cout
        if self.residual:
            self.add = FloatFunctional()

    def forward(self, x):
        y = self.expand_relu(self.expand_bn(self.expand(x)))
        y = self.dw_relu(self.dw_bn(self.dw(y)))
        y = self.project_bn(self.project(y))
        return self.add.add(y, x) if self.residual else y

    def fuse_groups(self, prefix):
        return [[prefix + n for n in group] for group in
                (["expand", "expand_bn", "expand_relu"], ["dw", "dw_bn", "dw_relu"], ["project", "project_bn"])]


class MobileNetV2Tiny(nn.Module):
    """models::mobilenetv2_tiny: a stride-2 3x3 Conv-BN-ReLU stem (16), five inverted residual
    blocks (out, stride, expansion), a 1x1 Conv-BN-ReLU to 128, global average pooling, flatten,
    a Linear head. ReLU, not ReLU6, as ours (and as torchvision's quantizable MobileNetV2)."""

    BLOCKS = [(16, 1, 2), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4)]

    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.stem = nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False)
        self.stem_bn, self.stem_relu = nn.BatchNorm2d(16), nn.ReLU()
        blocks, cin = [], 16
        for cout, stride, expand in self.BLOCKS:
            blocks.append(InvertedResidual(cin, cout, stride, expand))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.last, self.last_bn, self.last_relu = nn.Conv2d(cin, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU()
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.fc = nn.Linear(128, 10)
        self.dequant = DeQuantStub()
        self.fuse_groups = [["stem", "stem_bn", "stem_relu"], ["last", "last_bn", "last_relu"]]
        for i, block in enumerate(self.blocks):
            self.fuse_groups += block.fuse_groups(f"blocks.{i}.")

    def forward(self, x):
        x = self.stem_relu(self.stem_bn(self.stem(self.quant(x))))
        x = self.blocks(x)
        x = self.last_relu(self.last_bn(self.last(x)))
        return self.dequant(self.fc(self.flatten(self.pool(x))))


MODELS = {"lenet": LeNet, "resnet-tiny": ResNetTiny, "mobilenetv2-tiny": MobileNetV2Tiny}


def prepared_qat(model):
    """fuse_modules_qat + prepare_qat with PyTorch's fbgemm v1 qconfig (our QConfig::consistent
    ("fbgemm") has the same observers, ranges and fused fake quant; only the qparam formula
    differs, which costs the same)."""
    model.train()
    fused = fuse_modules_qat(model, model.fuse_groups)
    fused.qconfig = get_default_qat_qconfig("fbgemm", 1)
    return prepare_qat(fused)


# ---------------------------------------------------------------------------------------------
# Timing: warmup runs, then timed runs one by one (time.perf_counter), median / min / max.

def measure(case, work, iters, warmup):
    for _ in range(warmup):
        work()
    samples = []
    for _ in range(iters):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1e3)
    return {
        "case": case,
        "median_ms": statistics.median(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "iters": iters,
        "threads": torch.get_num_threads(),
    }


def json_line(r):
    """The same line, key order and rounding as the Rust side (BenchResult::json)."""
    peak = f', "peak_mb": {r["peak_mb"]:.3f}' if "peak_mb" in r else ""
    return (
        f'{{"case": "{r["case"]}", "median_ms": {r["median_ms"]:.3f}, "min_ms": {r["min_ms"]:.3f}, '
        f'"max_ms": {r["max_ms"]:.3f}, "iters": {r["iters"]}, "threads": {r["threads"]}{peak}}}'
    )


def peak_mb(work, before=lambda: None):
    """MiB (2^20 bytes) of tensor memory one `work()` holds at its busiest, above what was held
    before it: the running sum of the allocations and frees torch.profiler records (its memory
    timeline, a private API that export_memory_timeline also uses). Only tensors from PyTorch's
    CPU allocator are counted, not Python objects or the autograd graph's own bookkeeping.
    `before` runs outside the profile: what it frees is not part of the step."""
    before()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        work()
    current = peak = 0
    for _, action, _, nbytes in MemoryProfile(prof.profiler.kineto_results).timeline:
        if action == Action.CREATE:
            current += nbytes
        elif action == Action.DESTROY:
            current -= nbytes
        peak = max(peak, current)
    return peak / 2**20


# ---------------------------------------------------------------------------------------------
# The cases.

def bench_convbnrelu2d(case, groups, iters, warmup):
    # One nniqat.ConvBnReLU2d in train mode, N=32, 64->64 channels, 32x32, 3x3, pad 1, no conv
    # bias, groups 1 (convbnrelu2d) or 64 (dwconvbnrelu2d); qconfig get_default_qat_qconfig
    # ("fbgemm", 1): FusedMovingAvgObsFakeQuantize per channel on the BN-folded weight, and the
    # activation_post_process prepare_qat attaches after the module. Measures forward (conv,
    # batch statistics, BN, ReLU, output fake quant with its observer) and y.sum().backward()
    # (grads for the input, the weight, gamma and beta).
    qconfig = get_default_qat_qconfig("fbgemm", 1)
    m = nniqat.ConvBnReLU2d(64, 64, 3, padding=1, groups=groups, qconfig=qconfig)
    m.activation_post_process = qconfig.activation()
    m.train()
    x = torch.randn(32, 64, 32, 32, requires_grad=True)

    def work():
        x.grad = None
        m.zero_grad(set_to_none=True)
        y = m.activation_post_process(m(x))
        y.sum().backward()

    work()
    assert x.grad is not None and m.weight.grad is not None and m.bn.weight.grad is not None and m.bn.bias.grad is not None
    return measure(case, work, iters, warmup)


def bench_linearrelu(case, iters, warmup):
    # One nniqat.LinearReLU(1024, 1024, bias) in train mode with the fbgemm v1 qconfig (per-channel
    # fused weight fake quant; no output fake quant: the module as constructed) on a [128, 1024]
    # input. Measures forward and y.sum().backward() (grads for the input, weight and bias).
    qconfig = get_default_qat_qconfig("fbgemm", 1)
    m = nniqat.LinearReLU(1024, 1024, bias=True, qconfig=qconfig)
    m.train()
    x = torch.randn(128, 1024, requires_grad=True)

    def work():
        x.grad = None
        m.zero_grad(set_to_none=True)
        m(x).sum().backward()

    work()
    assert x.grad is not None and m.weight.grad is not None and m.bias.grad is not None
    return measure(case, work, iters, warmup)


def bench_step(case, model_name, qat, iters, warmup):
    # One full training step at batch 64 on [64, 1, 28, 28] pixels: zero_grad, forward,
    # F.cross_entropy, backward, SGD(momentum=0.9) step. qat-step-*: the model fused with
    # fuse_modules_qat and prepared with prepare_qat (fbgemm v1 qconfig; observers on, BN not
    # frozen: the first QAT epoch). float-step-*: the float model as built (unfused), train mode.
    # peak_mb: one more step after the timed ones, profiled for memory; the previous step's
    # gradients are freed first, as ours are gone by the end of a step (burn consumes them).
    model = MODELS[model_name]()
    model = prepared_qat(model) if qat else model.train()
    optim = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    images = torch.rand(BATCH, 1, 28, 28)
    labels = torch.arange(BATCH) % 10

    def work():
        optim.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optim.step()

    result = measure(case, work, iters, warmup)
    result["peak_mb"] = peak_mb(work, before=lambda: optim.zero_grad(set_to_none=True))
    return result


def bench_infer(case, model_name, int8, batch, iters, warmup):
    # LeNet or MobileNetV2-tiny inference on [batch, 1, 28, 28] pixels under torch.no_grad. int8-infer-*: the model
    # fused, prepared (fbgemm v1 qconfig), calibrated by a few training-mode forwards, then
    # torch.ao.quantization.convert in eval on the fbgemm engine (quantized conv / linear
    # kernels; quantize at the input, dequantize at the output). f32-infer-*: the same float
    # model in eval, unfused (Conv2d, BatchNorm2d with running statistics, ReLU).
    torch.backends.quantized.engine = "fbgemm"
    float_model = MODELS[model_name]()
    x = torch.rand(batch, 1, 28, 28)
    if int8:
        qat = prepared_qat(copy.deepcopy(float_model))
        with torch.no_grad():
            for _ in range(CALIBRATION_BATCHES):
                qat(torch.rand(32, 1, 28, 28))
        qat.eval()
        model = convert(qat)
    else:
        model = float_model.eval()

    def work():
        with torch.no_grad():
            model(x)

    return measure(case, work, iters, warmup)


def bench_int8_conv_transpose2d(case, batch, iters, warmup):
    # One int8 module on an input already quantized: a U-Net decoder's up-convolution,
    # torch.ao.nn.quantized.ConvTranspose2d 64 -> 32, kernel 2, stride 2, on quint8
    # [batch, 64, 16, 16], per-tensor qint8 weights with zero point 0, fbgemm engine.
    torch.backends.quantized.engine = "fbgemm"
    m = torch.ao.nn.quantized.ConvTranspose2d(64, 32, 2, stride=2)
    weight = torch.quantize_per_tensor(torch.randn(64, 32, 2, 2) * 0.1, 0.002, 0, torch.qint8)
    m.set_weight_bias(weight, (torch.arange(32) - 16.0) * 0.01)
    m.scale, m.zero_point = 0.05, 128
    x = torch.quantize_per_tensor(torch.rand(batch, 64, 16, 16), 1 / 255, 0, torch.quint8)

    def work():
        with torch.no_grad():
            m(x)

    return measure(case, work, iters, warmup)


def run_case(case, iters, warmup):
    torch.manual_seed(0)
    if case == "convbnrelu2d":
        return bench_convbnrelu2d(case, 1, iters, warmup)
    if case == "dwconvbnrelu2d":
        return bench_convbnrelu2d(case, 64, iters, warmup)
    if case == "linearrelu":
        return bench_linearrelu(case, iters, warmup)
    for model_name in MODELS:
        if case == f"qat-step-{model_name}":
            return bench_step(case, model_name, True, iters, warmup)
        if case == f"float-step-{model_name}":
            return bench_step(case, model_name, False, iters, warmup)
    if case == "int8-infer-convtranspose2d-b8":
        return bench_int8_conv_transpose2d(case, 8, iters, warmup)
    for model_name in ("lenet", "mobilenetv2-tiny"):
        for batch in (1, 32):
            if case == f"int8-infer-{model_name}-b{batch}":
                return bench_infer(case, model_name, True, batch, iters, warmup)
            if case == f"f32-infer-{model_name}-b{batch}":
                return bench_infer(case, model_name, False, batch, iters, warmup)
    raise ValueError(case)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", help="one of: " + ", ".join(CASES) + ", or all")
    parser.add_argument("--iters", type=int, default=10, help="timed runs")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before them")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    args = parser.parse_args()
    if args.case != "all" and args.case not in CASES:
        sys.exit(f"error: unknown bench case {args.case!r}; expected all or one of: {', '.join(CASES)}")
    if args.iters < 1:
        sys.exit("error: --iters must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for case in CASES if args.case == "all" else [args.case]:
        print(json_line(run_case(case, args.iters, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
