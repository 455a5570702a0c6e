"""Golden data for PyTorch's HistogramObserver (spec section 4.2).

Writes tests/golden/histogram_observer.safetensors. Each case `h{i}` feeds a HistogramObserver a
recorded sequence of tensors and stores, after every step `k`: the input `x{k}`, the histogram
`hist{k}`, its range `min{k}` / `max{k}`, the range the L2 search picks `search{k}` and the
resulting `scale{k}` / `zero_point{k}`. The sequences cover the three ways a histogram grows: the
same range (added), a wider range (the old one re-binned into 16 sub-bins per bin), and a first
observation that was one constant value (its whole mass moved to one bin).
"""

import json

import torch
from torch.ao.quantization import HistogramObserver

from common import TORCH_VERSION, out_path, save_safetensors, seed_all

SEED = 2468


def sequences(g):
    n = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    relu_like = torch.relu(n(600) * 1.3 + 0.2)
    laplace = torch.sign(n(800)) * -torch.log(u(800).clamp_min(1e-6))
    return [
        ("default: quint8 affine, 2048 bins; wider on both sides, then the same range, then wider on one side",
         dict(), [n(700), n(700) * 3.0 + 1.0, n(700).clamp(-2.0, 2.0), n(500) * 5.0 + 6.0]),
        ("a constant first observation, then spread values",
         dict(), [torch.full((50,), 2.0), n(600) + 2.0, n(600)]),
        ("qint8 symmetric, reduce_range, 1024 bins, ReLU-like activations",
         dict(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, reduce_range=True, bins=1024),
         [relu_like, torch.relu(n(600) * 2.0), relu_like * 0.5]),
        ("default_histogram_observer's range 0..127, 256 bins, heavy tails",
         dict(quant_min=0, quant_max=127, bins=256),
         [laplace, laplace * 2.5 - 1.0, n(400) * 0.1]),
        ("narrow positive data far from zero, then zeros (range grows to include 0)",
         dict(), [u(900) * 0.01 + 10.0, torch.zeros(30), u(900) * 0.01 + 10.0]),
        ("many values with far outliers: the search trims deep into the tails",
         dict(), [torch.cat([n(6000), torch.tensor([25.0, -18.0, 30.5])]), n(6000) * 1.5 + 0.5]),
        ("the range grows by 1/32: every 33rd old sub-bin midpoint falls on a new bin edge up to rounding",
         dict(), [torch.cat([torch.tensor([-1.3, 2.9]), u(2000) * 4.2 - 1.3]),
                  torch.tensor([-1.3 + 4.2 * 33.0 / 32.0, 0.5])]),
    ]


def main():
    seed_all(SEED)
    g = torch.Generator().manual_seed(SEED)
    tensors = {}
    meta = {"torch_version": TORCH_VERSION}
    for i, (desc, kwargs, xs) in enumerate(sequences(g)):
        obs = HistogramObserver(**kwargs)
        p = "h%d" % i
        for k, x in enumerate(xs):
            obs(x)
            lo, hi = obs._non_linear_param_search()
            scale, zp = obs.calculate_qparams()
            tensors.update({
                "%s.x%d" % (p, k): x,
                "%s.hist%d" % (p, k): obs.histogram.clone(),
                "%s.min%d" % (p, k): obs.min_val.reshape(1).clone(),
                "%s.max%d" % (p, k): obs.max_val.reshape(1).clone(),
                "%s.search%d" % (p, k): torch.stack([lo, hi]).reshape(2),
                "%s.scale%d" % (p, k): scale.reshape(1).to(torch.float32),
                "%s.zero_point%d" % (p, k): zp.reshape(1).to(torch.int32),
            })
        meta[p] = json.dumps({
            "desc": desc, "steps": len(xs), "bins": obs.bins,
            "dtype": str(obs.dtype), "qscheme": str(obs.qscheme), "reduce_range": obs.reduce_range,
            "quant_min": obs.quant_min, "quant_max": obs.quant_max,
            "state_dict_keys": sorted(obs.state_dict()),
        })
    path = out_path("histogram_observer.safetensors")
    save_safetensors(tensors, path, meta)
    print("wrote", path, json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
