"""Golden data for the min/max observers and FakeQuantize (spec sections 4 and 7.3).

Writes tests/golden/observers.json:
  observers:     sequences of observer operations with the running min/max after
                 each one and the final calculate_qparams() result
  fake_quantize: FakeQuantize modules fed one input (PyTorch's serialization tests)
"""

import torch
from torch.ao.quantization.fake_quantize import FakeQuantize
from torch.ao.quantization.observer import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    default_observer,
    default_per_channel_weight_observer,
)

from common import (
    TORCH_VERSION, dtype_name, f32_list, int_list, out_path, qscheme_name, seed_all, write_json,
)

SEED = 4321
PER_TENSOR = (torch.per_tensor_affine, torch.per_tensor_symmetric)
PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric)

# The fixed 2x2x2x2 tensor of PyTorch's test_per_channel_observers.
PER_CHANNEL_TEST_X = torch.tensor([
    [[[1.0, 2.0], [2.0, 2.5]], [[3.0, 4.0], [4.5, 6.0]]],
    [[[-4.0, -3.0], [5.0, 5.0]], [[6.0, 3.0], [7.0, 8.0]]],
])


def json_kwargs(kwargs):
    """Observer kwargs with torch dtypes/qschemes replaced by their names."""
    out = {}
    for k, v in kwargs.items():
        if k == "dtype":
            v = dtype_name(v)
        elif k == "qscheme":
            v = qscheme_name(v)
        out[k] = v
    return out


def accepted(dtype, qscheme, reduce_range):
    # PyTorch raises NotImplementedError for quint8 symmetric with reduce_range.
    return not (dtype == torch.quint8 and qscheme in (torch.per_tensor_symmetric,
                                                      torch.per_channel_symmetric) and reduce_range)


def run_sequence(cls, kwargs, ops, note):
    """ops: list of tensors to feed, or the string "reset" for reset_min_max_vals()."""
    obs = cls(**kwargs)
    inputs, after = [], []
    for op in ops:
        if isinstance(op, str):
            assert op == "reset"
            obs.reset_min_max_vals()
            inputs.append({"op": "reset_min_max_vals"})
        else:
            y = obs(op)
            assert torch.equal(y, op)  # observers are identity functions
            inputs.append({"op": "forward", "shape": list(op.shape), "data": f32_list(op)})
        after.append({"min_val": f32_list(obs.min_val), "max_val": f32_list(obs.max_val)})
    scale, zp = obs.calculate_qparams()
    return {
        "note": note,
        "observer": cls.__name__,
        "kwargs": json_kwargs(kwargs),
        "inputs": inputs,
        "after_each": after,
        "scale": f32_list(scale),
        "zero_point": int_list(zp),
        "eff_quant_min": int(obs.quant_min),
        "eff_quant_max": int(obs.quant_max),
    }


def per_tensor_observer_tests():
    entries = []
    mm_seq = [torch.tensor([1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0]), torch.tensor([4.0, 5.0, 5.0, 6.0, 7.0, 8.0])]
    ma_seq = [torch.tensor([0.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0]), torch.tensor([2.0, 5.0, 5.0, 6.0, 7.0, 10.0])]
    for dtype in (torch.qint8, torch.quint8):
        for qscheme in PER_TENSOR:
            for rr in (False, True):
                if not accepted(dtype, qscheme, rr):
                    continue
                kw = dict(dtype=dtype, qscheme=qscheme, reduce_range=rr)
                entries.append(run_sequence(MinMaxObserver, kw, mm_seq, "test_per_tensor_observers"))
                entries.append(run_sequence(MovingAverageMinMaxObserver, dict(averaging_constant=0.5, **kw),
                                            ma_seq, "test_per_tensor_observers"))
    return entries


def per_channel_observer_tests():
    entries = []
    x = PER_CHANNEL_TEST_X
    for dtype in (torch.qint8, torch.quint8):
        for qscheme in PER_CHANNEL:
            for rr in (False, True):
                if not accepted(dtype, qscheme, rr):
                    continue
                for axis in range(4):
                    kw = dict(ch_axis=axis, dtype=dtype, qscheme=qscheme, reduce_range=rr)
                    entries.append(run_sequence(PerChannelMinMaxObserver, kw, [x],
                                                "test_per_channel_observers"))
                    # As in PyTorch's test: the moving average sees 0.5x then 1.5x.
                    entries.append(run_sequence(MovingAveragePerChannelMinMaxObserver,
                                                dict(averaging_constant=0.5, **kw), [0.5 * x, 1.5 * x],
                                                "test_per_channel_observers"))
    return entries


def extra_sequences():
    g = torch.Generator().manual_seed(SEED)
    entries = []
    # Default averaging constant 0.01 over 5 inputs whose ranges drift.
    seq = [torch.randn(3, 5, generator=g) * (1.0 + i) + 0.3 * i for i in range(5)]
    entries.append(run_sequence(MovingAverageMinMaxObserver, dict(dtype=torch.quint8), seq,
                                "moving average c=0.01 per tensor"))
    entries.append(run_sequence(MovingAverageMinMaxObserver,
                                dict(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric), seq,
                                "moving average c=0.01 per tensor symmetric"))
    seq = [torch.randn(4, 2, 3, 3, generator=g) * (1.0 + 0.5 * i) for i in range(5)]
    entries.append(run_sequence(MovingAveragePerChannelMinMaxObserver,
                                dict(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric), seq,
                                "moving average c=0.01 per channel axis 0"))
    entries.append(run_sequence(MovingAveragePerChannelMinMaxObserver,
                                dict(ch_axis=1, dtype=torch.quint8, qscheme=torch.per_channel_affine), seq,
                                "moving average c=0.01 per channel axis 1"))

    # An empty tensor in the middle of a sequence is passed through without touching the state.
    a = torch.randn(3, 4, generator=g)
    b = torch.randn(3, 4, generator=g) * 2.0
    empty = torch.tensor([])
    for cls, kw in ((MinMaxObserver, {}), (MovingAverageMinMaxObserver, {}),
                    (PerChannelMinMaxObserver, dict(ch_axis=0)),
                    (MovingAveragePerChannelMinMaxObserver, dict(ch_axis=0))):
        entries.append(run_sequence(cls, kw, [empty, a, empty, b], "empty input is a no-op"))

    # reset_min_max_vals forgets the history; the next input is taken as-is
    # (for the moving averages too, since the state is back to its initial value).
    c = torch.randn(3, 4, generator=g) * 0.5
    for cls, kw in ((MinMaxObserver, {}), (MovingAverageMinMaxObserver, dict(averaging_constant=0.5)),
                    (PerChannelMinMaxObserver, dict(ch_axis=1)),
                    (MovingAveragePerChannelMinMaxObserver, dict(ch_axis=1, averaging_constant=0.5))):
        entries.append(run_sequence(cls, kw, [a, b, "reset", c, a], "reset_min_max_vals"))
    return entries


def fake_quantize_cases():
    g = torch.Generator().manual_seed(SEED + 1)
    cases = [
        ("test_fq_serializable_per_tensor", default_observer, dict(quant_min=0, quant_max=127),
         torch.tensor([-5.0, -3.5, -2.0, 0.0, 3.0, 5.0, 7.0])),
        ("test_fq_serializable_per_channel", default_per_channel_weight_observer,
         dict(quant_min=-128, quant_max=127, dtype=torch.qint8),
         torch.tensor([[-5.0, -3.5, -2.0, 0.0, 3.0, 5.0, 7.0], [1.0, 3.0, 2.0, 5.0, 6.5, 8.0, 10.0]])),
    ]
    out = []
    for note, obs_partial, kw, x in cases:
        fq = FakeQuantize(obs_partial, **kw)
        xg = x.clone().requires_grad_(True)
        y = fq(xg)
        dy = torch.randn(x.shape, generator=g)
        y.backward(dy)
        obs = fq.activation_post_process
        out.append({
            "note": note,
            "class": "FakeQuantize",
            "observer": type(obs).__name__,
            # the observer partial's own keywords, then FakeQuantize's (which override them)
            "observer_kwargs": json_kwargs(dict(obs_partial.p.keywords, **kw)),
            "eff_quant_min": int(fq.quant_min),
            "eff_quant_max": int(fq.quant_max),
            "dtype": dtype_name(fq.dtype),
            "qscheme": qscheme_name(fq.qscheme),
            "ch_axis": int(fq.ch_axis),
            "input": {"shape": list(x.shape), "data": f32_list(x)},
            "min_val": f32_list(obs.min_val),
            "max_val": f32_list(obs.max_val),
            "scale": f32_list(fq.scale),
            "zero_point": int_list(fq.zero_point),
            "output": f32_list(y),
            "dy": f32_list(dy),
            "input_grad": f32_list(xg.grad),
        })
    return out


def main():
    seed_all(SEED)
    observers = per_tensor_observer_tests() + per_channel_observer_tests() + extra_sequences()
    fqs = fake_quantize_cases()
    path = out_path("observers.json")
    write_json(path, {"torch_version": TORCH_VERSION, "observers": observers, "fake_quantize": fqs})
    print("wrote %s: %d observer sequences, %d fake_quantize cases" % (path, len(observers), len(fqs)))
    for f in fqs:
        print("  %s: scale %s zp %s" % (f["note"], f["scale"], f["zero_point"]))


if __name__ == "__main__":
    main()
