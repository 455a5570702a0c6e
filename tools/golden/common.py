"""Shared helpers for the golden-data generators.

Every generator imports this module first: it pins the thread count (so float
reductions happen in a fixed order), exposes repo-relative output paths, and
provides the JSON float encoding the Rust tests expect.
"""

import json
import math
import os
import struct
import warnings

import numpy as np
import torch

# One thread: reductions (BN statistics, conv backward) then run in a fixed order.
torch.set_num_threads(1)

# reduce_range emits a deprecation warning on every observer construction; it is noise here.
warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN_DIR = os.path.join(REPO_ROOT, "tests", "golden")
TORCH_VERSION = torch.__version__


def out_path(*parts):
    """Path under tests/golden/, creating parent directories."""
    path = os.path.join(GOLDEN_DIR, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def f32(v):
    """Encode one f32 value for JSON: the exact f32 value as a Python float,
    or the strings "inf"/"-inf". NaN is never expected in these fixtures."""
    v = float(np.float32(v))
    if math.isnan(v):
        raise ValueError("NaN in golden data")
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def f64(v):
    """Like f32() but without rounding to f32 (used for eps-style values that are f64 in torch)."""
    v = float(v)
    if math.isnan(v):
        raise ValueError("NaN in golden data")
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def f32_list(t):
    """Flatten a tensor / array / scalar to a list of encoded f32 values."""
    if isinstance(t, torch.Tensor):
        t = t.detach().to(torch.float32).reshape(-1).tolist()
    elif isinstance(t, np.ndarray):
        t = t.astype(np.float32).reshape(-1).tolist()
    elif not isinstance(t, (list, tuple)):
        t = [t]
    return [f32(v) for v in t]


def int_list(t):
    if isinstance(t, torch.Tensor):
        return [int(v) for v in t.detach().reshape(-1).tolist()]
    if not isinstance(t, (list, tuple)):
        t = [t]
    return [int(v) for v in t]


def write_json(path, obj):
    """Write a dict whose values are scalars or lists: one list entry per line,
    each entry compact, which keeps the files small but still diffable.
    allow_nan=False guarantees no NaN/Infinity tokens slip through un-encoded."""
    def dump(v):
        return json.dumps(v, allow_nan=False, separators=(",", ":"))

    lines = ["{"]
    items = list(obj.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if isinstance(value, list):
            lines.append(" %s: [" % dump(key))
            lines += ["  %s%s" % (dump(v), "," if j + 1 < len(value) else "") for j, v in enumerate(value)]
            lines.append(" ]%s" % comma)
        else:
            lines.append(" %s: %s%s" % (dump(key), dump(value), comma))
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def dtype_name(dt):
    return {torch.quint8: "quint8", torch.qint8: "qint8", torch.qint32: "qint32"}[dt]


def qscheme_name(qs):
    return {
        torch.per_tensor_affine: "per_tensor_affine",
        torch.per_tensor_symmetric: "per_tensor_symmetric",
        torch.per_channel_affine: "per_channel_affine",
        torch.per_channel_symmetric: "per_channel_symmetric",
    }[qs]


def to_saveable(t):
    """safetensors needs contiguous tensors that own their storage."""
    return t.detach().clone().contiguous()


def save_safetensors(tensors, path, metadata):
    """safetensors.torch.save_file, but with the metadata keys in sorted order.

    The Rust writer inside safetensors keeps __metadata__ in a hash map, so its
    key order (and therefore the file bytes) changes from run to run; rewriting
    the header makes regenerated fixtures byte-identical. The header is only
    re-serialised, tensor offsets are relative to the data section and stay valid.
    """
    from safetensors.torch import save

    tensors = {k: to_saveable(v) for k, v in tensors.items()}
    blob = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])
