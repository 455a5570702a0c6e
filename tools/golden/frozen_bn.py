"""Golden data for a batch norm with frozen statistics whose running mean is far from zero.

PyTorch's BatchNorm2d in eval mode (what freeze_bn_stats gives a fused module's BN) forms
gamma's gradient as sum(g * (x - running_mean)) / sqrt(running_var + eps); a form that
subtracts running_mean * sum(g) from sum(g * x) cancels when |running_mean| / std is large.

Writes tests/golden/frozen_bn.safetensors with keys
  x, weight, bias, running_mean, running_var   the inputs ([N, C, H, W] and [C])
  grad_output                                  the upstream gradient g
  y, grad_x, grad_weight, grad_bias            PyTorch's output and gradients
The metadata key "config" holds eps and the seed as JSON.
"""

import json

import torch

from common import TORCH_VERSION, out_path, save_safetensors, seed_all

SEED = 41000
EPS = 1e-5


def main():
    seed_all(SEED)
    bn = torch.nn.BatchNorm2d(4, eps=EPS)
    std = torch.tensor([0.5, 2.0, 1.0, 0.01])
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.7, 1.3, -0.4, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        # |running_mean| / std from 1e2 to 1e5: the cancellation grows with it.
        bn.running_mean.copy_(torch.tensor([1e2, -3e4, 5e3, 1e3]) * std)
        bn.running_var.copy_(std * std - EPS)
    bn.eval()
    x = (bn.running_mean.reshape(1, 4, 1, 1) + torch.randn(6, 4, 5, 5) * std.reshape(1, 4, 1, 1)).requires_grad_()
    y = bn(x)
    g = torch.randn_like(y)
    y.backward(g)
    out = {
        "x": x.detach(), "weight": bn.weight.detach(), "bias": bn.bias.detach(),
        "running_mean": bn.running_mean, "running_var": bn.running_var, "grad_output": g,
        "y": y.detach(), "grad_x": x.grad, "grad_weight": bn.weight.grad, "grad_bias": bn.bias.grad,
    }
    config = {"eps": EPS, "seed": SEED, "torch_version": TORCH_VERSION}
    save_safetensors(out, out_path("frozen_bn.safetensors"), {"config": json.dumps(config), "torch_version": TORCH_VERSION})
    print("wrote frozen_bn.safetensors")


if __name__ == "__main__":
    main()
