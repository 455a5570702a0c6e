"""Golden data for the raw fake-quant ops (spec section 3.3).

Writes tests/golden/fake_quant.safetensors with per-tensor cases `pt{i}.*` and
per-channel cases `pc{i}.*`; the case descriptions are in the file metadata.
"""

import json

import numpy as np
import torch

from common import TORCH_VERSION, out_path, save_safetensors, seed_all

SEED = 1234


def run_per_tensor(x, scale, zp, qmin, qmax, dy):
    """y and dx from torch's own per-tensor op (tensor-qparams overload, as FakeQuantize uses)."""
    x = x.detach().clone().requires_grad_(True)
    s = torch.tensor([scale], dtype=torch.float32)
    z = torch.tensor([zp], dtype=torch.int32)
    y = torch.fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)
    y.backward(dy)
    return s, z, y, x.grad


def run_per_channel(x, scale, zp, axis, qmin, qmax, dy):
    x = x.detach().clone().requires_grad_(True)
    y = torch.fake_quantize_per_channel_affine(x, scale, zp, axis, qmin, qmax)
    y.backward(dy)
    return y, x.grad


def tie_neighbourhood(scale, kmin, kmax, ulps):
    """f32 values within `ulps` ulps of every rounding tie (k + 0.5) * scale.

    Values this close to a tie are where x / s and x * (1 / s) can round to
    different integers, so they pin down which of the two forms is used.
    """
    ties = ((np.arange(kmin, kmax + 1, dtype=np.float64) + 0.5) * scale).astype(np.float32)
    out = [ties]
    up, down = ties.copy(), ties.copy()
    for _ in range(ulps):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        out += [up, down]
    return np.concatenate(out)


def division_mismatches(x, scale):
    """How many x round differently under x / s and x * (1 / s) (both in f32)."""
    s = np.float32(scale)
    inv = np.float32(1.0) / s
    return int(np.sum(np.rint(x / s) != np.rint(x * inv)))


def per_tensor_cases():
    g = torch.Generator().manual_seed(SEED)
    cases = []

    def add(desc, x, scale, zp, qmin, qmax):
        cases.append((desc, torch.as_tensor(x, dtype=torch.float32), scale, zp, qmin, qmax))

    # (a) the spec's vectors; 14.549999237 is the known x/s vs x*(1/s) discriminator.
    add("spec vectors s=0.1 z=0 qint8",
        [14.549999237, -14.549999237, 0.05, 0.15, 0.25, 12.75, 12.85], 0.1, 0, -128, 127)
    # (b) exact ties at s=1 (round half to even) and the clamp / STE mask edges.
    add("exact ties s=1 z=0 qint8",
        [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 127.5, -128.5, 128.5, -129.0, 126.5], 1.0, 0, -128, 127)
    # (c) uniform samples plus every value within 1 ulp of a tie. Division and
    # reciprocal-multiply disagree only next to ties (about 1 in 1e6 random
    # samples), so the tie neighbourhoods catch the difference where 200000
    # random samples (3.2 MB of fixture) usually would not.
    uni = (torch.rand(1024, generator=g) * 40.0 - 20.0).numpy()
    near = tie_neighbourhood(0.1, -200, 199, 1)
    xc = np.concatenate([uni, near]).astype(np.float32)
    add("uniform [-20,20] + tie neighbourhoods s=0.1 z=0 qint8 (%d values where x/s != x*(1/s))"
        % division_mismatches(xc, 0.1), xc, 0.1, 0, -128, 127)
    # (d) quint8 with a non-zero zero point.
    add("randn*3 quint8 0..255 z=100 s=0.05", torch.randn(256, generator=g) * 3.0, 0.05, 100, 0, 255)
    # (e) 4-bit.
    add("4-bit 0..15 z=3 s=0.37", torch.randn(256, generator=g) * 2.5, 0.37, 3, 0, 15)
    # (f) reduce_range activation range.
    add("reduce range 0..127 z=0 s=0.02", torch.randn(256, generator=g), 0.02, 0, 0, 127)
    # (g) tiny scale: inv_s = 1e6 must be computed in f32.
    add("tiny scale 1e-6 qint8", torch.randn(256, generator=g) * 1e-4, 1e-6, 0, -128, 127)
    # (h) 16-bit range; randn*20 spans past +-32.767 so some values clamp.
    add("16-bit -32768..32767 s=1e-3", torch.randn(512, generator=g) * 20.0, 1e-3, 0, -32768, 32767)
    # (i) the spec vectors again with a 16-bit range: at -128..127 the
    # discriminating value 14.549999237 clamps, here it must give 14.6 (not 14.5).
    add("spec vectors s=0.1 z=0 -32768..32767 (no clamping)",
        [14.549999237, -14.549999237, 0.05, 0.15, 0.25, 12.75, 12.85], 0.1, 0, -32768, 32767)
    return cases, g


def per_channel_cases(g):
    cases = []

    # pc0: weight-like, axis 0, qint8 symmetric with the observer's max/127.5 scales.
    x = torch.randn(8, 4, 3, 3, generator=g)
    absmax = x.abs().reshape(8, -1).amax(dim=1)
    scale = (absmax / 127.5).to(torch.float32)
    # Put values near ties (k + 0.5) * s and beyond the range in every channel.
    for c in range(8):
        x[c, 0, 0, 0] = (torch.tensor(3.5) * scale[c]).item()
        x[c, 0, 0, 1] = (torch.tensor(-6.5) * scale[c]).item()
        x[c, 0, 0, 2] = 200.0 * scale[c].item()
        x[c, 0, 1, 0] = -300.0 * scale[c].item()
    cases.append(("axis 0 [8,4,3,3] qint8 symmetric scales absmax/127.5", x, scale,
                  torch.zeros(8, dtype=torch.int32), 0, -128, 127))

    # pc1: activation-like, axis 1, quint8 with a different zero point per channel.
    x = torch.randn(2, 6, 5, 5, generator=g) * 2.0
    scale = torch.tensor([0.01, 0.02, 0.05, 0.1, 0.003, 0.0625], dtype=torch.float32)
    zp = torch.tensor([0, 37, 128, 200, 255, 90], dtype=torch.int32)
    x[0, 5, 0, :] = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5]) * 0.0625  # exact ties (power-of-two scale)
    cases.append(("axis 1 [2,6,5,5] quint8 per-channel zp", x, scale, zp, 1, 0, 255))

    # pc2: axis 3 (last), power-of-two scales so (k + 0.5) * s are exact ties.
    scale = torch.tensor([0.5, 0.25, 0.125, 1.0, 2.0], dtype=torch.float32)
    zp = torch.tensor([-3, 0, 5, -128, 127], dtype=torch.int32)
    k = torch.randint(-140, 140, (2, 3, 4, 5), generator=g).to(torch.float32)
    half = (torch.rand(2, 3, 4, 5, generator=g) < 0.5).to(torch.float32) * 0.5
    x = (k + half) * scale.reshape(1, 1, 1, 5)
    cases.append(("axis 3 [2,3,4,5] qint8 exact ties and out of range", x, scale, zp, 3, -128, 127))
    return cases


def main():
    seed_all(SEED)
    tensors = {}
    meta = {"torch_version": TORCH_VERSION}

    pt, g = per_tensor_cases()
    for i, (desc, x, scale, zp, qmin, qmax) in enumerate(pt):
        dy = torch.randn(x.shape, generator=g)
        s, z, y, dx = run_per_tensor(x, scale, zp, qmin, qmax, dy)
        p = "pt%d" % i
        tensors.update({
            p + ".x": x, p + ".scale": s, p + ".zero_point": z,
            p + ".range": torch.tensor([qmin, qmax], dtype=torch.int32),
            p + ".dy": dy, p + ".y": y, p + ".dx": dx,
        })
        meta[p] = desc

    for i, (desc, x, scale, zp, axis, qmin, qmax) in enumerate(per_channel_cases(g)):
        dy = torch.randn(x.shape, generator=g)
        y, dx = run_per_channel(x, scale, zp, axis, qmin, qmax, dy)
        p = "pc%d" % i
        tensors.update({
            p + ".x": x, p + ".scale": scale, p + ".zero_point": zp,
            p + ".axis": torch.tensor([axis], dtype=torch.int32),
            p + ".range": torch.tensor([qmin, qmax], dtype=torch.int32),
            p + ".dy": dy, p + ".y": y, p + ".dx": dx,
        })
        meta[p] = desc

    path = out_path("fake_quant.safetensors")
    save_safetensors(tensors, path, meta)
    print("wrote", path, json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
