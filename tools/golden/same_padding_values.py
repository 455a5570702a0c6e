"""PyTorch's convolutions with padding="same" where the padding is asymmetric (an even kernel
extent: one more element after than before), in every padding mode, in float64: input,
weight, bias and output per case. Writes tests/golden/same_padding_values.safetensors.
Run: ~/torch-ref/bin/python tools/golden/same_padding_values.py
"""
import common  # noqa: F401  (pins threads)

import torch
from safetensors.torch import save_file

def main():
    common.seed_all(0)
    tensors = {}
    cases = 0
    for dims, conv in [(1, torch.nn.Conv1d), (2, torch.nn.Conv2d), (3, torch.nn.Conv3d)]:
        for mode in ["zeros", "reflect", "replicate", "circular"]:
            # An even kernel on the last axis, an odd dilation on a middle one, so every axis kind
            # of asymmetry (and one symmetric axis in 2-d and 3-d) appears.
            for kernel, dilation in [([4] + [3] * (dims - 1), 1), ([2] * dims, 3)]:
                k = kernel[::-1]
                m = conv(3, 4, k, padding="same", dilation=dilation, padding_mode=mode, dtype=torch.float64)
                x = torch.randn(2, 3, *([7] * dims), dtype=torch.float64)
                y = m(x)
                name = f"{dims}d_{mode}_k{'x'.join(map(str, k))}_d{dilation}"
                tensors[f"{name}.input"] = x.contiguous()
                tensors[f"{name}.weight"] = m.weight.detach().contiguous()
                tensors[f"{name}.bias"] = m.bias.detach().contiguous()
                tensors[f"{name}.output"] = y.detach().contiguous()
                cases += 1
    path = common.out_path("same_padding_values.safetensors")
    save_file(tensors, path, metadata={"torch": common.TORCH_VERSION})
    print(f"wrote {cases} cases to {path}")


if __name__ == "__main__":
    main()
