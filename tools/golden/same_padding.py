"""PyTorch's padding="same" / "valid" for the convolutions: which padding each axis gets and
the output shape, for kernels, dilations and input sizes of 1-d, 2-d and 3-d convs, with the
cases PyTorch pads asymmetrically marked. Writes tests/golden/same_padding.json.
Run: ~/torch-ref/bin/python tools/golden/same_padding.py
"""
import json
import pathlib

import torch

torch.manual_seed(0)
cases = []
for dims, conv in [(1, torch.nn.Conv1d), (2, torch.nn.Conv2d), (3, torch.nn.Conv3d)]:
    for kernel, dilation, size in [(3, 1, 7), (5, 2, 11), (1, 1, 4), (3, 3, 9), (2, 1, 6), (4, 1, 8)]:
        for padding in ["same", "valid"]:
            k = [kernel] + [3] * (dims - 1)
            m = conv(2, 3, k, padding=padding, dilation=dilation)
            x = torch.randn(1, 2, *([size] * dims))
            y = m(x)
            # (left, right) per axis, in axis order (PyTorch stores them reversed, last axis first).
            rev = list(m._reversed_padding_repeated_twice)
            pairs = [rev[2 * i : 2 * i + 2] for i in range(dims)][::-1]
            cases.append(
                {
                    "dims": dims,
                    "kernel": k,
                    "dilation": dilation,
                    "padding": padding,
                    "input": list(x.shape),
                    "output": list(y.shape),
                    "pads": pairs,
                    "symmetric": all(a == b for a, b in pairs),
                }
            )
strided = True
try:
    torch.nn.Conv2d(2, 3, 3, padding="same", stride=2)
    strided = False
except ValueError as e:
    strided_message = str(e)
out = {"cases": cases, "strided_same_rejected": strided, "strided_message": strided_message}
path = pathlib.Path(__file__).resolve().parents[2] / "tests" / "golden" / "same_padding.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {len(cases)} cases to {path}")
