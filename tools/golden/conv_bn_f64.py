"""Float64 ConvBn(ReLU)2d golden data with fake quant disabled.

A port of the setup of PyTorch's test_conv_bn_relu: with fake quant off the
fused module must equal conv -> BN (-> ReLU), so these values check the
folding/unfolding algebra and the BN running-stat updates at f64 precision.

Writes tests/golden/conv_bn_f64.safetensors with keys
  c{i}/init/<state key>
  c{i}/iter{k}/{input,dy,output,input_grad,grad/<param>,running_mean,running_var,num_batches_tracked}
and the JSON config of case i in metadata key "c{i}".
"""

import json

import torch
import torch.ao.nn.intrinsic.qat as nniqat
from torch.ao.quantization import disable_fake_quant, get_default_qat_qconfig

from common import TORCH_VERSION, out_path, save_safetensors, to_saveable

ITERS = 2
SEED = 777

# Parameter sets spanning the hypothesis space of test_conv_bn_relu.
CASES = [
    dict(batch=2, in_channels=3, out_channels=4, groups=1, height=5, width=6, kernel_size=[3, 3],
         stride=1, padding=1, padding_mode="zeros", use_relu=False, freeze_bn=False, has_bias=False,
         eps=1e-5, momentum=0.1),
    dict(batch=2, in_channels=4, out_channels=6, groups=2, height=7, width=5, kernel_size=[3, 2],
         stride=2, padding=0, padding_mode="zeros", use_relu=True, freeze_bn=False, has_bias=True,
         eps=1e-4, momentum=0.2),
    dict(batch=2, in_channels=6, out_channels=6, groups=3, height=5, width=5, kernel_size=[3, 3],
         stride=1, padding=2, padding_mode="circular", use_relu=False, freeze_bn=True, has_bias=True,
         eps=1e-3, momentum=0.3),
    dict(batch=2, in_channels=2, out_channels=3, groups=1, height=8, width=6, kernel_size=[3, 3],
         stride=2, padding=2, padding_mode="circular", use_relu=True, freeze_bn=True, has_bias=False,
         eps=1e-5, momentum=0.1),
    dict(batch=2, in_channels=6, out_channels=6, groups=3, height=5, width=6, kernel_size=[2, 3],
         stride=1, padding=1, padding_mode="zeros", use_relu=True, freeze_bn=False, has_bias=True,
         eps=1e-3, momentum=0.3),
    dict(batch=2, in_channels=4, out_channels=4, groups=2, height=5, width=7, kernel_size=[3, 3],
         stride=2, padding=1, padding_mode="circular", use_relu=False, freeze_bn=False, has_bias=False,
         eps=1e-4, momentum=0.2),
]


def build(cfg):
    cls = nniqat.ConvBnReLU2d if cfg["use_relu"] else nniqat.ConvBn2d
    qconfig = get_default_qat_qconfig("fbgemm", 0)
    m = cls(cfg["in_channels"], cfg["out_channels"], tuple(cfg["kernel_size"]), stride=cfg["stride"],
            padding=cfg["padding"], groups=cfg["groups"], bias=cfg["has_bias"],
            padding_mode=cfg["padding_mode"], eps=cfg["eps"], momentum=cfg["momentum"],
            freeze_bn=cfg["freeze_bn"], qconfig=qconfig).double()
    m.apply(disable_fake_quant)  # observers still run; they do not affect the output
    with torch.no_grad():
        # Non-trivial BN state so that frozen (running-stat) cases are meaningful.
        c = cfg["out_channels"]
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.copy_(torch.randn(c, dtype=torch.float64) * 0.1)
        m.bn.running_mean.copy_(torch.randn(c, dtype=torch.float64) * 0.1)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m


def main():
    torch.manual_seed(SEED)
    tensors, meta = {}, {"torch_version": TORCH_VERSION}
    for i, cfg in enumerate(CASES):
        m = build(cfg)
        p = "c%d/" % i
        for k, v in m.state_dict().items():
            tensors[p + "init/" + k] = to_saveable(v)
        shape = [cfg["batch"], cfg["in_channels"], cfg["height"], cfg["width"]]
        for it in range(ITERS):
            # Fresh gradients each iteration (no optimizer step, no accumulation).
            m.zero_grad(set_to_none=True)
            x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
            y = m(x)
            dy = torch.randn_like(y)
            y.backward(dy)
            q = p + "iter%d/" % it
            tensors[q + "input"] = to_saveable(x)
            tensors[q + "dy"] = to_saveable(dy)
            tensors[q + "output"] = to_saveable(y)
            tensors[q + "input_grad"] = to_saveable(x.grad)
            for name, param in m.named_parameters():
                tensors[q + "grad/" + name] = to_saveable(param.grad)
            tensors[q + "running_mean"] = to_saveable(m.bn.running_mean)
            tensors[q + "running_var"] = to_saveable(m.bn.running_var)
            tensors[q + "num_batches_tracked"] = to_saveable(m.bn.num_batches_tracked)
        meta["c%d" % i] = json.dumps(dict(cfg, module=type(m).__name__, qconfig="fbgemm v0 (fake quant disabled)",
                                          iters=ITERS, dtype="float64", torch_version=TORCH_VERSION))
    path = out_path("conv_bn_f64.safetensors")
    save_safetensors(tensors, path, meta)
    print("wrote", path)


if __name__ == "__main__":
    main()
