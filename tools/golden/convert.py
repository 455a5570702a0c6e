"""Golden data for converting a small QAT network to int8 (torch.ao.quantization.convert).

A residual CNN (conv-bn-relu, a basic block whose add goes through a
FloatFunctional, max pool, two linears) is fused with fuse_modules_qat,
prepared with prepare_qat, trained for a few SGD steps and converted. The
"_bias" cases give conv1 a bias (a ConvBnReLU2d with a conv bias) and put a
BatchNorm1d after fc1 (a LinearBn1d, then a separate ReLU). The model is
The Rust
side loads the recorded state dict into its own prepared model, converts it and
compares against PyTorch's converted model.

Writes tests/golden/convert/<backend><version>[_bias].safetensors per case with keys
  state/<state key>            QAT model state_dict after training (PyTorch's dtypes)
  input                        [32,1,12,12] f32 eval input
  qat_eval_output              QAT model (eval mode, fake quant) output on input
  int8_output                  converted model output on input, dequantized, [32,10]
  int8/<name>/int_repr         u8 int_repr of a quantized module's output, first
                               INT_REPR_BATCH samples only (keeps the files small)
  int8/<name>/scale            f64 [1], int8/<name>/zero_point i64 [1]
  int8/<name>/weight_int       i8 int_repr of the converted weight
  int8/<name>/weight_scale     f64, per channel [out] or per tensor [1]
  int8/<name>/weight_zero_point i64, same shape as weight_scale
  int8/<name>/bias             f32 float bias of the converted module
The metadata key "config" holds the case config as JSON.
"""

import json
import warnings
from collections import OrderedDict

import torch
import torch.ao.nn.intrinsic.qat as nniqat
import torch.ao.nn.quantized as nnq
import torch.nn as nn
from torch.ao.quantization import (DeQuantStub, QuantStub, disable_observer, fuse_modules_qat,
                                   get_default_qat_qconfig, prepare_qat)
# Aliased: this file is itself named convert.py.
from torch.ao.quantization import convert as quant_convert

from common import TORCH_VERSION, out_path, save_safetensors, seed_all, to_saveable

# Eager-mode quantization is deprecated in this torch; the warnings (one per
# prepare/convert call and per quantized tensor creation) are noise here.
warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")

LR = 0.01
MOMENTUM = 0.9
STEPS = 6
FREEZE_BN_FROM = 4  # 0-based step index, as in modules.py
DISABLE_OBSERVER_FROM = 5
TRAIN_BATCH = 16
EVAL_BATCH = 32
EVAL_INPUT_STD = 1.5
INT_REPR_BATCH = 8  # the 32-sample int_reprs alone would be ~150 KB per case
IMAGE = 12

# (backend, version, biased variant); the index seeds the case.
CASES = [("fbgemm", 0, False), ("qnnpack", 0, False), ("fbgemm", 1, False), ("fbgemm", 1, True), ("qnnpack", 0, True)]

BLOCK_GROUPS = [
    ["block.body.conv_a", "block.body.bn_a", "block.body.relu_a"],
    ["block.body.conv_b", "block.body.bn_b"],
]
FUSE_GROUPS = [["conv1", "bn1", "relu1"], *BLOCK_GROUPS, ["fc1", "relu2"]]
# conv1 with its bias folds into ConvBnReLU2d; fc1 + BatchNorm1d into LinearBn1d.
FUSE_GROUPS_BIAS = [["conv1", "bn1", "relu1"], *BLOCK_GROUPS, ["fc1", "bn_fc"]]

# Converted modules whose outputs are hooked. block.add is a QFunctional: its
# add_relu() bypasses forward(), so the hook sits on its (Identity)
# activation_post_process, which add_relu does call on the result.
HOOKED = ["quant", "conv1", "block.body.conv_a", "block.body.conv_b", "block.add", "fc1", "fc2"]
HOOK_TARGET = {"block.add": "block.add.activation_post_process"}
WEIGHTED = ["conv1", "block.body.conv_a", "block.body.conv_b", "fc1", "fc2"]


class Block(nn.Module):
    """Residual basic block with the ReLU after the add."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(OrderedDict(
            conv_a=nn.Conv2d(8, 8, 3, padding=1, bias=False),
            bn_a=nn.BatchNorm2d(8),
            relu_a=nn.ReLU(),
            conv_b=nn.Conv2d(8, 8, 3, padding=1, bias=False),
            bn_b=nn.BatchNorm2d(8),
        ))
        self.add = nnq.FloatFunctional()

    def forward(self, x):
        return self.add.add_relu(self.body(x), x)


class Net(nn.Module):
    def __init__(self, biased=False):
        super().__init__()
        self.biased = biased
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=biased)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.block = Block()
        self.pool = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(8 * 6 * 6, 32)
        if biased:
            self.bn_fc = nn.BatchNorm1d(32)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.block(x)
        x = self.flatten(self.pool(x))
        x = self.fc1(x)
        if self.biased:
            x = self.bn_fc(x)
        x = self.relu2(x)
        x = self.fc2(x)
        return self.dequant(x)


def build(backend, version, biased):
    model = Net(biased)
    with torch.no_grad():
        # Non-trivial BN state so that folding gamma / sqrt(var + eps) matters.
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.copy_(torch.randn(m.num_features) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features) * 0.1)
                m.running_var.uniform_(0.5, 2.0)
    model.train()  # fuse_modules_qat and prepare_qat require train mode
    fuse_modules_qat(model, FUSE_GROUPS_BIAS if biased else FUSE_GROUPS, inplace=True)
    model.qconfig = get_default_qat_qconfig(backend, version)
    prepare_qat(model, inplace=True)
    return model


def train(model):
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    for k in range(STEPS):
        model.train()  # does not undo the BN freeze (ConvBn's train() override)
        if k >= FREEZE_BN_FROM:
            model.apply(nniqat.freeze_bn_stats)
        if k >= DISABLE_OBSERVER_FROM:
            model.apply(disable_observer)
        x = torch.randn(TRAIN_BATCH, 1, IMAGE, IMAGE)
        loss = (model(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def one(v, dtype):
    return torch.tensor([v], dtype=dtype)


def record_int8(qmodel, x, out):
    """Runs the converted model on x, recording hooked int_reprs and converted weights."""
    mods = dict(qmodel.named_modules())
    captured = {}

    def hook_for(name):
        def hook(_mod, _inp, y):
            captured[name] = y
        return hook

    handles = [mods[HOOK_TARGET.get(n, n)].register_forward_hook(hook_for(n)) for n in HOOKED]
    with torch.no_grad():
        y = qmodel(x)
    for h in handles:
        h.remove()

    for name in HOOKED:
        q = captured[name]
        assert q.is_quantized and q.qscheme() == torch.per_tensor_affine, (name, q.qscheme())
        p = "int8/%s/" % name
        # Static quantization is per sample, so a batch slice equals running those samples alone.
        out[p + "int_repr"] = q.int_repr()[:INT_REPR_BATCH]
        out[p + "scale"] = one(q.q_scale(), torch.float64)
        out[p + "zero_point"] = one(q.q_zero_point(), torch.int64)

    for name in WEIGHTED:
        m = mods[name]
        w = m.weight()
        p = "int8/%s/" % name
        out[p + "weight_int"] = w.int_repr()
        if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            out[p + "weight_scale"] = w.q_per_channel_scales().to(torch.float64)
            out[p + "weight_zero_point"] = w.q_per_channel_zero_points().to(torch.int64)
        else:
            out[p + "weight_scale"] = one(w.q_scale(), torch.float64)
            out[p + "weight_zero_point"] = one(w.q_zero_point(), torch.int64)
        b = m.bias()
        if b is not None:
            out[p + "bias"] = b.detach()
    return y


def compare(qat_y, int8_y, scale, zero_point):
    """Agreement of the two outputs on fc2's output grid (both should already lie on it)."""
    def q(t):
        return torch.quantize_per_tensor(t, scale, zero_point, torch.quint8).int_repr().to(torch.int64)
    a, b = q(qat_y), q(int8_y)
    return {
        "equal_fraction": float((a == b).double().mean()),
        "max_abs_diff_in_scale_units": int((a - b).abs().max()),
        "raw_float_equal_fraction": float((qat_y == int8_y).double().mean()),
    }


def run_case(i, backend, version, biased):
    seed = 30000 + i
    seed_all(seed)
    # The quantized kernels used by convert's modules come from this engine.
    torch.backends.quantized.engine = backend
    model = build(backend, version, biased)
    train(model)
    model.eval()

    out = {}
    for k, v in model.state_dict().items():
        out["state/" + k] = to_saveable(v)
    x = torch.randn(EVAL_BATCH, 1, IMAGE, IMAGE) * EVAL_INPUT_STD
    with torch.no_grad():
        qat_y = model(x)
    qmodel = quant_convert(model.eval(), inplace=False)
    int8_y = record_int8(qmodel, x, out)
    out["input"] = x
    out["qat_eval_output"] = qat_y
    out["int8_output"] = int8_y

    stats = compare(qat_y, int8_y, qmodel.fc2.scale, qmodel.fc2.zero_point)
    config = {
        "backend": backend, "version": version, "seed": seed, "steps": STEPS, "lr": LR,
        "momentum": MOMENTUM, "freeze_bn_from_step": FREEZE_BN_FROM,
        "disable_observer_from_step": DISABLE_OBSERVER_FROM, "train_batch": TRAIN_BATCH,
        "eval_batch": EVAL_BATCH, "int_repr_batch": INT_REPR_BATCH,
        "fused": FUSE_GROUPS_BIAS if biased else FUSE_GROUPS, "biased": biased,
        "hooked": HOOKED, "weighted": WEIGHTED, "qat_vs_int8": stats, "torch_version": TORCH_VERSION,
    }
    name = "%s%d%s.safetensors" % (backend, version, "_bias" if biased else "")
    save_safetensors(out, out_path("convert", name),
                     {"config": json.dumps(config), "torch_version": TORCH_VERSION})
    return name, stats


def main():
    engine = torch.backends.quantized.engine
    try:
        for i, (backend, version, biased) in enumerate(CASES):
            name, stats = run_case(i, backend, version, biased)
            print("wrote convert/%s  %s" % (name, json.dumps(stats)))
    finally:
        # Other generators run in the same process under generate_all.
        torch.backends.quantized.engine = engine


if __name__ == "__main__":
    main()
