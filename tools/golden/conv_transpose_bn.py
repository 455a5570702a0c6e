"""Float32 ConvTranspose2d -> BatchNorm2d (-> ReLU) golden data.

PyTorch has no QAT ConvTranspose module, so this is the float reference for the
Rust ConvTransposeBn2d / ConvTransposeBnReLU2d with fake quant disabled, plus
the per-channel fake quant of the BN-folded weight. ConvTranspose2d.weight is
[in, out/groups, kh, kw]: the output channel is weight axis 1 (groups = 1 here).

Writes tests/golden/conv_transpose_bn.safetensors with keys
  t{i}/init/{weight,bias,bn.weight,bn.bias,bn.running_mean,bn.running_var}
  t{i}/iter{k}/{input,dy,output,input_grad,grad/weight,grad/bias,grad/bn.weight,grad/bn.bias,
                running_mean,running_var}                     k = 0..1, train mode
  t{i}/eval/{input,output}                                    eval mode (BN running stats)
  t{i}/fq/{w_fold,scale,w_fq}                                 cases 0 and 1, from the init state
(`bias` / `grad/bias` only when the case has a conv bias) and the JSON config of
case i in metadata key "t{i}".
"""

import json

import torch
import torch.nn as nn

from common import TORCH_VERSION, out_path, save_safetensors, seed_all, to_saveable

ITERS = 2
SEED = 4242
BATCH, HEIGHT, WIDTH = 2, 5, 6
FQ_CASES = (0, 1)
QUANT_MIN, QUANT_MAX = -128, 127

CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=[3, 3], stride=[1, 1], padding=[1, 1],
         output_padding=[0, 0], bias=False, relu=False),
    dict(in_channels=3, out_channels=5, kernel_size=[3, 3], stride=[2, 2], padding=[1, 1],
         output_padding=[1, 1], bias=True, relu=True),
    dict(in_channels=2, out_channels=4, kernel_size=[2, 3], stride=[2, 1], padding=[0, 1],
         output_padding=[1, 0], bias=True, relu=False),
    dict(in_channels=4, out_channels=2, kernel_size=[4, 4], stride=[2, 2], padding=[1, 1],
         output_padding=[0, 0], bias=False, relu=True),
]


def build(cfg):
    conv = nn.ConvTranspose2d(cfg["in_channels"], cfg["out_channels"], tuple(cfg["kernel_size"]),
                              stride=tuple(cfg["stride"]), padding=tuple(cfg["padding"]),
                              output_padding=tuple(cfg["output_padding"]), bias=cfg["bias"])
    bn = nn.BatchNorm2d(cfg["out_channels"])
    with torch.no_grad():
        c = cfg["out_channels"]
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.copy_(torch.randn(c) * 0.1)
        bn.running_mean.copy_(torch.randn(c) * 0.1)
        bn.running_var.uniform_(0.5, 2.0)
    return conv, bn


def fold_fake_quant(conv, bn):
    """Per-output-channel (axis 1) symmetric qint8 fake quant of the BN-folded weight,
    with the scale computed like PerChannelMinMaxObserver(per_channel_symmetric, qint8)."""
    with torch.no_grad():
        sf = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w_fold = conv.weight * sf.reshape(1, -1, 1, 1)
        min_val = torch.amin(w_fold, dim=(0, 2, 3))
        max_val = torch.amax(w_fold, dim=(0, 2, 3))
        zeros = torch.zeros_like(min_val)
        max_abs = torch.max(-torch.min(min_val, zeros), torch.max(max_val, zeros))
        scale = max_abs / ((QUANT_MAX - QUANT_MIN) / 2)
        scale = torch.max(scale, torch.tensor(torch.finfo(torch.float32).eps))
        zero_point = torch.zeros(scale.shape, dtype=torch.int32)
        w_fq = torch.fake_quantize_per_channel_affine(w_fold, scale, zero_point, 1, QUANT_MIN, QUANT_MAX)
    return w_fold, scale, w_fq


def main():
    seed_all(SEED)
    tensors, meta = {}, {"torch_version": TORCH_VERSION}
    for i, cfg in enumerate(CASES):
        conv, bn = build(cfg)
        p = "t%d/" % i
        params = [("weight", conv.weight), ("bias", conv.bias), ("bn.weight", bn.weight), ("bn.bias", bn.bias)]
        params = [(name, t) for name, t in params if t is not None]
        for name, t in params + [("bn.running_mean", bn.running_mean), ("bn.running_var", bn.running_var)]:
            tensors[p + "init/" + name] = to_saveable(t)
        if i in FQ_CASES:
            w_fold, scale, w_fq = fold_fake_quant(conv, bn)
            tensors[p + "fq/w_fold"] = to_saveable(w_fold)
            tensors[p + "fq/scale"] = to_saveable(scale)
            tensors[p + "fq/w_fq"] = to_saveable(w_fq)

        def forward(x):
            y = bn(conv(x))
            return torch.relu(y) if cfg["relu"] else y

        shape = [BATCH, cfg["in_channels"], HEIGHT, WIDTH]
        conv.train()
        bn.train()
        for it in range(ITERS):
            # Fresh gradients each iteration (no optimizer step, no accumulation).
            for _, t in params:
                t.grad = None
            x = torch.randn(shape, requires_grad=True)
            y = forward(x)
            dy = torch.randn_like(y)
            y.backward(dy)
            q = p + "iter%d/" % it
            tensors[q + "input"] = to_saveable(x)
            tensors[q + "dy"] = to_saveable(dy)
            tensors[q + "output"] = to_saveable(y)
            tensors[q + "input_grad"] = to_saveable(x.grad)
            for name, t in params:
                tensors[q + "grad/" + name] = to_saveable(t.grad)
            tensors[q + "running_mean"] = to_saveable(bn.running_mean)
            tensors[q + "running_var"] = to_saveable(bn.running_var)
        conv.eval()
        bn.eval()
        with torch.no_grad():
            x = torch.randn(shape)
            y = forward(x)
        tensors[p + "eval/input"] = to_saveable(x)
        tensors[p + "eval/output"] = to_saveable(y)
        meta["t%d" % i] = json.dumps(dict(cfg, groups=1, eps=bn.eps, momentum=bn.momentum,
                                          input_shape=shape, iters=ITERS, dtype="float32",
                                          fake_quant=i in FQ_CASES, torch_version=TORCH_VERSION))
    path = out_path("conv_transpose_bn.safetensors")
    save_safetensors(tensors, path, meta)
    print("wrote", path)


if __name__ == "__main__":
    main()
