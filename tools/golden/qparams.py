"""Golden data for the two qparam formulas (spec sections 3.4 and 4.3).

Writes tests/golden/qparams.json with three lists:
  observer_formula  - MinMaxObserver / PerChannelMinMaxObserver.calculate_qparams()
  observer_errors   - observer configs (or min/max inputs) that PyTorch rejects
  choose_qparams    - the scale / zero_point buffers that FusedMovingAvgObsFakeQuantize
                      writes after one observation (fbgemm's ChooseQuantizationParams)
"""

import torch
from torch.ao.quantization.fake_quantize import FakeQuantize, FusedMovingAvgObsFakeQuantize
from torch.ao.quantization.observer import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)

from common import (
    TORCH_VERSION, dtype_name, f32, f32_list, int_list, out_path, qscheme_name, write_json,
)

QINT8, QUINT8, QINT32 = torch.qint8, torch.quint8, torch.qint32
PTA, PTS = torch.per_tensor_affine, torch.per_tensor_symmetric
PCA, PCS = torch.per_channel_affine, torch.per_channel_symmetric
F32_EPS = torch.finfo(torch.float32).eps
SPEC_MIN, SPEC_MAX = -1.149422, 2.533506


def obs_case(dtype, qscheme, mins, maxs, reduce_range=False, qmin=None, qmax=None, eps=F32_EPS):
    return dict(dtype=dtype, qscheme=qscheme, reduce_range=reduce_range,
                quant_min=qmin, quant_max=qmax, eps=eps, min=mins, max=maxs)


def observer_cases():
    c = []
    # Degenerate ranges: no min == max special case, the eps clamp decides.
    for dt in (QUINT8, QINT8):
        for qs in (PTA, PTS):
            for v in (0.0, 3.0, -3.0):
                c.append(obs_case(dt, qs, [v], [v]))
    # One-sided and ordinary ranges.
    for dt in (QUINT8, QINT8):
        for qs in (PTA, PTS):
            for lo, hi in ((0.5, 4.0), (-4.0, -0.5), (-2.3, 5.7), (SPEC_MIN, SPEC_MAX), (-0.01, 100.0)):
                c.append(obs_case(dt, qs, [lo], [hi]))
    # quint8 symmetric: zp 128 with the default range, 127 with an explicit 0..255.
    c.append(obs_case(QUINT8, PTS, [SPEC_MIN], [SPEC_MAX], qmin=0, qmax=255))
    c.append(obs_case(QUINT8, PTS, [0.0], [0.0], qmin=0, qmax=255))
    # reduce_range (quint8 symmetric + reduce_range is an error, see observer_error_cases).
    for dt, qs in ((QINT8, PTA), (QINT8, PTS), (QUINT8, PTA)):
        c.append(obs_case(dt, qs, [-2.3], [5.7], reduce_range=True))
        c.append(obs_case(dt, qs, [0.5], [4.0], reduce_range=True))
    c.append(obs_case(QUINT8, PTA, [-2.3], [5.7], reduce_range=True, qmin=0, qmax=255))
    c.append(obs_case(QINT8, PTA, [-2.3], [5.7], reduce_range=True, qmin=-128, qmax=127))
    c.append(obs_case(QINT8, PTS, [-2.3], [5.7], reduce_range=True, qmin=-127, qmax=127))
    # Custom narrow ranges.
    c.append(obs_case(QUINT8, PTA, [-2.3], [5.7], qmin=0, qmax=15))
    c.append(obs_case(QUINT8, PTS, [-2.3], [5.7], qmin=0, qmax=15))
    c.append(obs_case(QINT8, PTA, [-2.3], [5.7], qmin=-8, qmax=7))
    c.append(obs_case(QINT8, PTS, [-2.3], [5.7], qmin=-8, qmax=7))
    c.append(obs_case(QUINT8, PTA, [-2.3], [5.7], qmin=0, qmax=3))
    c.append(obs_case(QINT8, PTS, [SPEC_MIN], [SPEC_MAX], qmin=-127, qmax=127, eps=2.0 ** -12))
    # 16-bit custom range on qint32, and qint32's default (full 32-bit) range.
    c.append(obs_case(QINT32, PTA, [-2.3], [5.7], qmin=-32768, qmax=32767))
    c.append(obs_case(QINT32, PTS, [-2.3], [5.7], qmin=-32768, qmax=32767))
    c.append(obs_case(QINT32, PTA, [-2.3], [5.7]))
    # Tiny and huge ranges.
    c.append(obs_case(QUINT8, PTA, [0.0], [1e-9]))
    c.append(obs_case(QINT8, PTS, [-5e-10], [5e-10]))
    c.append(obs_case(QUINT8, PTA, [1.0], [1.0 + 1e-6]))
    c.append(obs_case(QUINT8, PTA, [0.0], [1e-9], eps=2.0 ** -12))
    c.append(obs_case(QUINT8, PTA, [-1e30], [1e30]))
    c.append(obs_case(QINT8, PTS, [-1e30], [1e30]))
    c.append(obs_case(QUINT8, PTA, [0.0], [1e30]))
    # Per channel: channels zero / one-sided positive / one-sided negative / two-sided / spec example.
    mins = [0.0, 0.5, -4.0, -2.3, SPEC_MIN, 3.0]
    maxs = [0.0, 4.0, -0.5, 5.7, SPEC_MAX, 3.0]
    for dt in (QUINT8, QINT8):
        for qs in (PCA, PCS):
            c.append(obs_case(dt, qs, mins, maxs))
    c.append(obs_case(QINT8, PCA, mins, maxs, reduce_range=True))
    c.append(obs_case(QINT8, PCS, mins, maxs, reduce_range=True))
    c.append(obs_case(QUINT8, PCA, mins, maxs, reduce_range=True))
    c.append(obs_case(QUINT8, PCS, mins, maxs, qmin=0, qmax=255))
    c.append(obs_case(QINT8, PCS, mins, maxs, qmin=-8, qmax=7))
    return c


def observer_error_cases():
    c = []
    c.append(obs_case(QUINT8, PTA, [-1.0], [1.0], qmin=10, qmax=5))      # quant_min > quant_max
    c.append(obs_case(QUINT8, PTA, [-1.0], [1.0], qmin=0, qmax=0))       # empty range
    c.append(obs_case(QUINT8, PTA, [-1.0], [1.0], qmin=1, qmax=255))     # range must include 0
    c.append(obs_case(QINT8, PTA, [-1.0], [1.0], qmin=-10, qmax=-1))     # range must include 0
    c.append(obs_case(QINT8, PTA, [-1.0], [1.0], qmin=-200, qmax=200))   # wider than 8 bits
    c.append(obs_case(QUINT8, PTA, [-1.0], [1.0], qmin=0, qmax=256))     # wider than 8 bits
    c.append(obs_case(QUINT8, PTS, [-1.0], [1.0], reduce_range=True))    # quint8 symmetric reduce_range
    c.append(obs_case(QUINT8, PCS, [-1.0], [1.0], reduce_range=True))
    c.append(obs_case(QUINT8, PTA, [2.0], [1.0]))                        # min > max
    c.append(obs_case(QINT8, PCA, [0.0, 2.0], [1.0, 1.0]))              # min > max in one channel
    # Candidates PyTorch might or might not reject; whichever it does, the case
    # lands in the matching list (observer_formula when accepted).
    c.append(obs_case(QUINT8, PTA, [-1.0], [1.0], qmin=-8, qmax=7))      # signed range on quint8
    c.append(obs_case(QINT8, PTA, [-1.0], [1.0], qmin=0, qmax=255))      # unsigned range on qint8
    return c


def make_observer(case):
    per_channel = case["qscheme"] in (PCA, PCS)
    cls = PerChannelMinMaxObserver if per_channel else MinMaxObserver
    kwargs = dict(dtype=case["dtype"], qscheme=case["qscheme"], reduce_range=case["reduce_range"],
                  quant_min=case["quant_min"], quant_max=case["quant_max"], eps=case["eps"])
    if per_channel:
        kwargs["ch_axis"] = 0
    return cls(**kwargs), per_channel


def describe(case):
    per_channel = case["qscheme"] in (PCA, PCS)
    return {
        "observer": "PerChannelMinMaxObserver" if per_channel else "MinMaxObserver",
        "dtype": dtype_name(case["dtype"]),
        "qscheme": qscheme_name(case["qscheme"]),
        "reduce_range": case["reduce_range"],
        "quant_min": case["quant_min"],
        "quant_max": case["quant_max"],
        "eps": f32(case["eps"]),
        "min": f32_list(case["min"]),
        "max": f32_list(case["max"]),
    }


def run_observer_case(case):
    """Returns (record, None) on success or (None, error record)."""
    rec = describe(case)
    try:
        obs, per_channel = make_observer(case)
        mins = torch.tensor(case["min"], dtype=torch.float32)
        maxs = torch.tensor(case["max"], dtype=torch.float32)
        # Set the running min/max buffers directly (0-d per tensor, [C] per channel).
        if per_channel:
            obs.min_val, obs.max_val = mins, maxs
        else:
            obs.min_val, obs.max_val = mins[0], maxs[0]
        scale, zp = obs.calculate_qparams()
    except Exception as e:  # noqa: BLE001 - recording what torch raises is the point
        rec["stage"] = "construct" if "obs" not in locals() else "calculate_qparams"
        rec["exception"] = type(e).__name__
        rec["message"] = " ".join(str(e).split())  # collapse torch's multi-line messages
        return None, rec
    rec.update(scale=f32_list(scale), zero_point=int_list(zp),
               eff_quant_min=int(obs.quant_min), eff_quant_max=int(obs.quant_max))
    return rec, None


def fake_quant_error_cases():
    """The observers do not check quant_min/quant_max against the dtype, FakeQuantize does.
    Also the fused module's per-channel path only supports ch_axis 0."""
    cases = [
        ("FakeQuantize", dict(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127)),
        ("FakeQuantize", dict(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                              dtype=QINT8)),
        ("FakeQuantize", dict(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=256)),
        ("FakeQuantize", dict(observer=MovingAverageMinMaxObserver, quant_min=10, quant_max=5)),
        ("FusedMovingAvgObsFakeQuantize",
         dict(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
              dtype=QINT8, qscheme=PCS, ch_axis=1)),
    ]
    out = []
    for cls_name, kw in cases:
        cls = FakeQuantize if cls_name == "FakeQuantize" else FusedMovingAvgObsFakeQuantize
        rec = {
            "observer": cls_name,
            "observer_class": kw["observer"].__name__,
            "dtype": dtype_name(kw.get("dtype", QUINT8)),
            "qscheme": qscheme_name(kw.get("qscheme", PTA)),
            "reduce_range": False,
            "quant_min": kw["quant_min"],
            "quant_max": kw["quant_max"],
        }
        if "ch_axis" in kw:
            rec["ch_axis"] = kw["ch_axis"]
        stage = "construct"
        try:
            fq = cls(**kw)
            stage = "forward"
            fq(torch.randn(3, 4))
        except Exception as e:  # noqa: BLE001
            rec.update(stage=stage, exception=type(e).__name__, message=" ".join(str(e).split()))
            out.append(rec)
            continue
        raise RuntimeError("expected torch to reject %r" % (rec,))
    return out


def cq_case(dtype, qscheme, mins, maxs, qmin, qmax, reduce_range=False):
    return dict(dtype=dtype, qscheme=qscheme, min=mins, max=maxs, quant_min=qmin, quant_max=qmax,
                reduce_range=reduce_range)


def choose_qparams_cases():
    c = []
    for dt, qs, lo, hi in ((QUINT8, PTA, 0, 255), (QINT8, PTS, -128, 127), (QINT8, PTA, -128, 127),
                           (QUINT8, PTA, 0, 127)):
        for mn, mx in ((0.0, 0.0), (3.0, 3.0), (-3.0, -3.0), (0.5, 4.0), (-4.0, -0.5), (-2.3, 5.7),
                       (SPEC_MIN, SPEC_MAX), (-0.01, 100.0), (-7.0, 0.001)):
            c.append(cq_case(dt, qs, [mn], [mx], lo, hi))
    # Tiny ranges: scale falls under the 6.1e-5 floor and min/max get stretched.
    for dt, qs, lo, hi in ((QUINT8, PTA, 0, 255), (QINT8, PTS, -128, 127), (QUINT8, PTA, 0, 127)):
        for mn, mx in ((0.0, 1e-3), (-1e-4, 2e-4), (-5e-3, 1e-3), (1.0, 1.0 + 1e-6), (-1e-9, 1e-9)):
            c.append(cq_case(dt, qs, [mn], [mx], lo, hi))
    # Scale just above / below the threshold.
    c.append(cq_case(QUINT8, PTA, [0.0], [6.1e-5 * 255 * 1.001], 0, 255))
    c.append(cq_case(QUINT8, PTA, [0.0], [6.1e-5 * 255 * 0.999], 0, 255))
    # 4-bit ranges.
    for dt, qs, lo, hi in ((QUINT8, PTA, 0, 15), (QINT8, PTS, -8, 7), (QINT8, PTA, -8, 7)):
        for mn, mx in ((-2.3, 5.7), (0.5, 4.0), (-4.0, -0.5), (0.0, 0.0)):
            c.append(cq_case(dt, qs, [mn], [mx], lo, hi))
    # The -127..127 weight range.
    c.append(cq_case(QINT8, PTS, [SPEC_MIN], [SPEC_MAX], -127, 127))
    # reduce_range through the fused module (effective range 0..127).
    c.append(cq_case(QUINT8, PTA, [-2.3], [5.7], 0, 255, reduce_range=True))
    # Per channel (ch_axis 0): mixed one-sided / two-sided / degenerate channels.
    mins = [0.0, 0.5, -4.0, -2.3, SPEC_MIN, 3.0, -1e-4, -7.0]
    maxs = [0.0, 4.0, -0.5, 5.7, SPEC_MAX, 3.0, 2e-4, 0.001]
    c.append(cq_case(QINT8, PCS, mins, maxs, -128, 127))
    c.append(cq_case(QINT8, PCA, mins, maxs, -128, 127))
    c.append(cq_case(QUINT8, PCA, mins, maxs, 0, 255))
    c.append(cq_case(QINT8, PCS, mins, maxs, -127, 127))
    return c


def run_choose_qparams_case(case):
    per_channel = case["qscheme"] in (PCA, PCS)
    obs_cls = MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver
    kwargs = dict(dtype=case["dtype"], qscheme=case["qscheme"])
    if case["reduce_range"]:
        kwargs["reduce_range"] = True
    if per_channel:
        kwargs["ch_axis"] = 0
    fq = FusedMovingAvgObsFakeQuantize(observer=obs_cls, quant_min=case["quant_min"],
                                       quant_max=case["quant_max"], **kwargs)
    mins = torch.tensor(case["min"], dtype=torch.float32)
    maxs = torch.tensor(case["max"], dtype=torch.float32)
    # One row per channel holding exactly that channel's min and max; the first
    # observation is taken as-is, so the running min/max equal the case's values.
    x = torch.stack([mins, maxs], dim=1) if per_channel else torch.stack([mins[0], maxs[0]])
    fq(x)
    obs = fq.activation_post_process
    assert torch.equal(obs.min_val.reshape(-1), mins) and torch.equal(obs.max_val.reshape(-1), maxs)
    rec = {
        "dtype": dtype_name(case["dtype"]),
        "qscheme": qscheme_name(case["qscheme"]),
        "quant_min": case["quant_min"],
        "quant_max": case["quant_max"],
        "reduce_range": case["reduce_range"],
        "eff_quant_min": int(fq.quant_min),
        "eff_quant_max": int(fq.quant_max),
        "min": f32_list(mins),
        "max": f32_list(maxs),
        "scale": f32_list(fq.scale),
        "zero_point": int_list(fq.zero_point),
    }
    return rec


def main():
    formula, errors = [], []
    for case in observer_cases() + observer_error_cases():
        ok, err = run_observer_case(case)
        if ok is not None:
            formula.append(ok)
        else:
            errors.append(err)
    errors += fake_quant_error_cases()
    choose = [run_choose_qparams_case(c) for c in choose_qparams_cases()]
    path = out_path("qparams.json")
    write_json(path, {
        "torch_version": TORCH_VERSION,
        "observer_formula": formula,
        "observer_errors": errors,
        "choose_qparams": choose,
    })
    print("wrote %s: %d formula, %d errors, %d choose_qparams"
          % (path, len(formula), len(errors), len(choose)))
    for e in errors:
        print("  error:", e["observer"], e["dtype"], e["qscheme"], e["quant_min"], e["quant_max"], e["reduce_range"],
              e.get("min"), e.get("max"), "->", e["stage"], e["exception"], e["message"][:100])


if __name__ == "__main__":
    main()
