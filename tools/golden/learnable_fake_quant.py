"""Golden data for learnable fake quantization (spec section 3.6).

Writes tests/golden/learnable_fake_quant.safetensors:
- `lpt{i}.*`: torch._fake_quantize_learnable_per_tensor_affine, forward and the three
  gradients (x, scale, zero point), including the per-tensor backward's zero-point rounding
  (trunc(z + 0.5), not the forward's half-even) for negative and .5 zero points.
- `lpc{i}.*`: torch._fake_quantize_learnable_per_channel_affine, the same per channel.
- `lm{i}.*`: _LearnableFakeQuantize modules through static estimates, then learning with
  SGD: the scale, zero point and output after every step. Each case's schedule is in the
  metadata as JSON.
"""

import json

import torch
from torch.ao.quantization import (
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
)
from torch.ao.quantization._learnable_fake_quantize import _LearnableFakeQuantize

from common import TORCH_VERSION, out_path, save_safetensors, seed_all

SEED = 4321


def learnable_op(x, scale, zp, axis, qmin, qmax, grad_factor, dy):
    x = x.detach().clone().requires_grad_(True)
    s = scale.detach().clone().requires_grad_(True)
    z = zp.detach().clone().requires_grad_(True)
    if axis is None:
        y = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, qmin, qmax, grad_factor)
    else:
        y = torch._fake_quantize_learnable_per_channel_affine(x, s, z, axis, qmin, qmax, grad_factor)
    y.backward(dy)
    return y, x.grad, s.grad, z.grad


def per_tensor_cases(g):
    cases = []
    # The spec's zero points: integer, .5 tie, fraction, and negatives (where the per-tensor
    # backward rounds differently from the forward), each in qint8 with values beyond both ends.
    for zp in [3.0, 2.5, 3.4, -2.0, -2.3, -2.5, -2.7, -127.9]:
        x = torch.randn(300, generator=g) * 2.0
        x[:4] = torch.tensor([0.5, 1.5, -0.5, 2.5]) * 0.0625  # exact ties at s = 1/16
        cases.append(("qint8 s=1/16 zp=%g g=1" % zp, x, 0.0625, zp, -128, 127, 1.0))
    # 4-bit unsigned with the LSQ grad factor and clamping at both ends; a zero point outside
    # the range (clamped in both directions); grad factors 0.1 and 10.
    x = torch.randn(500, generator=g) * 1.5
    cases.append(("4-bit 0..15 s=0.2 zp=7.6 g=1/sqrt(500*15)", x, 0.2, 7.6, 0, 15, 1.0 / (500 * 15) ** 0.5))
    cases.append(("4-bit 0..15 s=0.3 zp=19 (clamped) g=0.1", x, 0.3, 19.0, 0, 15, 0.1))
    cases.append(("3-bit -4..3 s=0.5 zp=-6.2 (clamped) g=10", x, 0.5, -6.2, -4, 3, 10.0))
    return cases


def per_channel_cases(g):
    cases = []
    x = torch.randn(6, 3, 3, 3, generator=g)
    scale = torch.tensor([0.02, 0.05, 0.1, 0.01, 0.2, 0.0625])
    zp = torch.tensor([0.0, 2.5, -3.5, 1.4, -0.6, 0.0])  # half-even in both directions here
    x[5, 0, 0, :] = torch.tensor([0.5, 1.5, 2.5]) * 0.0625
    cases.append(("axis 0 [6,3,3,3] 4-bit -8..7 g=1/sqrt(162*7)", x, scale, zp, 0, -8, 7, 1.0 / (162 * 7) ** 0.5))
    x = torch.randn(2, 4, 5, 5, generator=g) * 3.0
    scale = torch.tensor([0.1, 0.05, 0.3, 0.02])
    zp = torch.tensor([100.0, 37.5, 0.0, 255.7])
    cases.append(("axis 1 [2,4,5,5] quint8 g=1", x, scale, zp, 1, 0, 255, 1.0))
    return cases


def module_cases(g):
    """(description, schedule, factory, input shape). Schedule: 'static' forwards, then
    'learn' steps (enable_param_learning, SGD on scale and zero point)."""
    return [
        (
            "per tensor quint8 0..15 affine, LSQ grad scaling, moving average 0.01",
            {"static": 2, "learn": 4, "lr": 0.01},
            lambda: _LearnableFakeQuantize(
                MovingAverageMinMaxObserver, quant_min=0, quant_max=15, use_grad_scaling=True,
                dtype=torch.quint8, qscheme=torch.per_tensor_affine),
            (4, 3, 5, 5),
        ),
        (
            "per channel qint8 -8..7 symmetric (zero point held at 0), no grad scaling",
            {"static": 1, "learn": 3, "lr": 0.001},
            lambda: _LearnableFakeQuantize(
                MovingAveragePerChannelMinMaxObserver, quant_min=-8, quant_max=7, channel_len=5,
                use_grad_scaling=False, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0),
            (5, 2, 3, 3),
        ),
    ]


def run_module(prefix, desc, schedule, factory, shape, g, tensors, meta):
    fq = factory()
    fq.enable_static_estimate()
    opt = None
    steps = schedule["static"] + schedule["learn"]
    for step in range(steps):
        if step == schedule["static"]:
            fq.enable_param_learning()
            opt = torch.optim.SGD([fq.scale, fq.zero_point], lr=schedule["lr"])
        x = torch.randn(shape, generator=g) * 2.0 + 0.5
        w = torch.randn(shape, generator=g)
        y = fq(x)
        tensors["%s.x%d" % (prefix, step)] = x
        tensors["%s.w%d" % (prefix, step)] = w
        tensors["%s.y%d" % (prefix, step)] = y.detach()
        if opt is not None:
            opt.zero_grad()
            (y * w).sum().backward()
            opt.step()
        tensors["%s.scale%d" % (prefix, step)] = fq.scale.detach().clone()
        tensors["%s.zero_point%d" % (prefix, step)] = fq.zero_point.detach().clone()
    s, z = fq.calculate_qparams()
    tensors[prefix + ".convert_scale"] = s
    tensors[prefix + ".convert_zero_point"] = z.to(torch.int32)
    meta[prefix] = json.dumps({"desc": desc, "steps": steps, **schedule, "state_dict_keys": sorted(fq.state_dict())})


def main():
    seed_all(SEED)
    g = torch.Generator().manual_seed(SEED)
    tensors = {}
    meta = {"torch_version": TORCH_VERSION}
    for i, (desc, x, scale, zp, qmin, qmax, gf) in enumerate(per_tensor_cases(g)):
        dy = torch.randn(x.shape, generator=g)
        y, dx, ds, dz = learnable_op(x, torch.tensor([scale]), torch.tensor([zp]), None, qmin, qmax, gf, dy)
        p = "lpt%d" % i
        tensors.update({
            p + ".x": x, p + ".scale": torch.tensor([scale]), p + ".zero_point": torch.tensor([zp]),
            p + ".range": torch.tensor([qmin, qmax], dtype=torch.int32),
            p + ".grad_factor": torch.tensor([gf], dtype=torch.float64),
            p + ".dy": dy, p + ".y": y, p + ".dx": dx, p + ".dscale": ds, p + ".dzero_point": dz,
        })
        meta[p] = desc
    for i, (desc, x, scale, zp, axis, qmin, qmax, gf) in enumerate(per_channel_cases(g)):
        dy = torch.randn(x.shape, generator=g)
        y, dx, ds, dz = learnable_op(x, scale, zp, axis, qmin, qmax, gf, dy)
        p = "lpc%d" % i
        tensors.update({
            p + ".x": x, p + ".scale": scale, p + ".zero_point": zp,
            p + ".axis": torch.tensor([axis], dtype=torch.int32),
            p + ".range": torch.tensor([qmin, qmax], dtype=torch.int32),
            p + ".grad_factor": torch.tensor([gf], dtype=torch.float64),
            p + ".dy": dy, p + ".y": y, p + ".dx": dx, p + ".dscale": ds, p + ".dzero_point": dz,
        })
        meta[p] = desc
    for i, (desc, schedule, factory, shape) in enumerate(module_cases(g)):
        run_module("lm%d" % i, desc, schedule, factory, shape, g, tensors, meta)
    path = out_path("learnable_fake_quant.safetensors")
    save_safetensors(tensors, path, meta)
    print("wrote", path, json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
