"""Self-check of the generated fixtures (not needed to regenerate them).

Replays every modules/, modules1d/ and modules3d/ case from its recorded init state and
inputs in a fresh PyTorch module and requires bit-identical outputs, gradients
and states; checks conv_bn_f64 against an explicit conv -> BN (-> ReLU)
reference; and loads the torch_saved_state pair.

    ~/torch-ref/bin/python tools/golden/check_fixtures.py
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torch.ao.quantization import disable_observer  # noqa: E402

import modules as gen  # noqa: E402
from common import GOLDEN_DIR  # noqa: E402


def sub(d, prefix):
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}


def same(a, b, what):
    if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
        raise AssertionError("%s differs (dtype %s/%s shape %s/%s)" % (what, a.dtype, b.dtype,
                                                                         tuple(a.shape), tuple(b.shape)))


def same_state(m, expected, what):
    sd = m.state_dict()
    assert set(sd) == set(expected), (what, set(sd) ^ set(expected))
    for k in sd:
        same(sd[k], expected[k], "%s %s" % (what, k))


def replay_module_case(path, cfg):
    d = load_file(path)
    m = gen.build_module(cfg)
    m.load_state_dict(sub(d, "init/"))
    same_state(m, sub(d, "init/"), "init")
    opt = torch.optim.SGD(m.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    for k in range(cfg["steps"]):
        p = "step%d/" % k
        m.train()
        if k >= cfg["freeze_bn_from_step"]:
            gen.freeze_bn(m, cfg)  # cfg["freeze_bn_via"] picks how (default: m.apply(...))
        if k >= cfg["disable_observer_from_step"]:
            m.apply(disable_observer)
        x = d[p + "input"].clone().requires_grad_(True)
        y = m.activation_post_process(m(x))
        same(y, d[p + "output"], p + "output")
        opt.zero_grad()
        y.backward(d[p + "dy"])
        same(x.grad, d[p + "input_grad"], p + "input_grad")
        for name, param in m.named_parameters():
            same(param.grad, d[p + "grad/" + name], p + "grad/" + name)
        opt.step()
        same_state(m, sub(d, p + "state/"), p + "state")
    m.eval()
    with torch.no_grad():
        same(m.activation_post_process(m(d["eval/input"])), d["eval/output"], "eval/output")
    same_state(m, sub(d, "eval/state/"), "eval/state")
    # The schedule did what it says: BN stops counting once frozen, observers stop at step 4.
    if "bn.num_batches_tracked" in sub(d, "init/"):
        counts = [int(d["step%d/state/bn.num_batches_tracked" % k]) for k in range(cfg["steps"])]
        assert counts == [1, 2, 3, 3, 3], counts
    for key in sub(d, "step3/state/"):
        if key.endswith(("min_val", "max_val")):
            same(d["step3/state/" + key], d["step4/state/" + key], "observer frozen " + key)


def check_conv_bn_f64():
    path = os.path.join(GOLDEN_DIR, "conv_bn_f64.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    d = load_file(path)
    i = 0
    while "c%d" % i in meta:
        cfg = json.loads(meta["c%d" % i])
        init = sub(d, "c%d/init/" % i)
        w = init["weight"].clone().requires_grad_(True)
        b = init["bias"].clone().requires_grad_(True) if "bias" in init else None
        gamma = init["bn.weight"].clone().requires_grad_(True)
        beta = init["bn.bias"].clone().requires_grad_(True)
        rm, rv = init["bn.running_mean"].clone(), init["bn.running_var"].clone()
        for it in range(2):
            p = "c%d/iter%d/" % (i, it)
            for t in (w, b, gamma, beta):
                if t is not None:
                    t.grad = None
            x = d[p + "input"].clone().requires_grad_(True)
            if cfg["padding_mode"] == "zeros":
                conv = F.conv2d(x, w, b, cfg["stride"], cfg["padding"], 1, cfg["groups"])
            else:
                pad = [cfg["padding"]] * 4
                conv = F.conv2d(F.pad(x, pad, mode=cfg["padding_mode"]), w, b, cfg["stride"], 0, 1,
                                cfg["groups"])
            y = F.batch_norm(conv, rm, rv, gamma, beta, training=not cfg["freeze_bn"],
                             momentum=cfg["momentum"], eps=cfg["eps"])
            if cfg["use_relu"]:
                y = F.relu(y)
            y.backward(d[p + "dy"])
            checks = [(y, "output"), (x.grad, "input_grad"), (w.grad, "grad/weight"),
                      (gamma.grad, "grad/bn.weight"), (beta.grad, "grad/bn.bias"),
                      (rm, "running_mean"), (rv, "running_var")]
            if b is not None:
                checks.append((b.grad, "grad/bias"))
            for got, name in checks:
                err = (got.detach() - d[p + name]).abs().max().item()
                assert err < 1e-10, (p + name, err)
        i += 1
    return i


def main():
    index = json.load(open(os.path.join(GOLDEN_DIR, "modules", "index.json")))
    for case in index["cases"]:
        replay_module_case(os.path.join(GOLDEN_DIR, "modules", case["file"]), case["config"])
    print("modules: %d cases replay bit-exactly" % len(index["cases"]))

    index1d = json.load(open(os.path.join(GOLDEN_DIR, "modules1d", "index.json")))
    for case in index1d["cases"]:
        replay_module_case(os.path.join(GOLDEN_DIR, "modules1d", case["file"]), case["config"])
    print("modules1d: %d cases replay bit-exactly" % len(index1d["cases"]))

    index3d = json.load(open(os.path.join(GOLDEN_DIR, "modules3d", "index.json")))
    for case in index3d["cases"]:
        replay_module_case(os.path.join(GOLDEN_DIR, "modules3d", case["file"]), case["config"])
    print("modules3d: %d cases replay bit-exactly" % len(index3d["cases"]))

    saved = index["torch_saved_state"]
    m = gen.build_module(saved["config"])
    m.load_state_dict(load_file(os.path.join(GOLDEN_DIR, "modules", saved["state_file"])))
    io = load_file(os.path.join(GOLDEN_DIR, "modules", saved["io_file"]))
    m.eval()
    with torch.no_grad():
        same(m.activation_post_process(m(io["input"])), io["output"], "torch_saved_state output")
    print("torch_saved_state: loads and reproduces its eval output")

    print("conv_bn_f64: %d cases match conv -> BN within 1e-10" % check_conv_bn_f64())


if __name__ == "__main__":
    main()
