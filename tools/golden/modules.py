"""Golden data for the fused QAT modules (the core fixture).

For each case writes tests/golden/modules/<case>.safetensors holding the initial
state, five SGD training steps (with BN freezing from step 3 and observers off
from step 4, as in the QAT tutorial), and one eval forward. Also writes
modules/index.json and the torch_saved_state*.safetensors pair.

Key scheme inside a case file:
  init/<state key>
  step{k}/input, step{k}/dy, step{k}/output, step{k}/input_grad,
  step{k}/grad/<param name>, step{k}/state/<state key>       (k = 0..4)
  eval/input, eval/output, eval/state/<state key>
"""

import json

import torch
import torch.ao.nn.intrinsic.qat as nniqat
from safetensors.torch import save_file
from torch.ao.quantization import disable_observer, get_default_qat_qconfig

from common import TORCH_VERSION, out_path, save_safetensors, to_saveable, write_json

LR = 0.01
MOMENTUM = 0.9
STEPS = 5
FREEZE_BN_FROM = 3
DISABLE_OBSERVER_FROM = 4
BATCH = 4
SPATIAL = 9
LINEAR_IN, LINEAR_OUT, LINEAR_BATCH = 20, 30, 16

QCONFIGS = [("fbgemm", 0), ("fbgemm", 1), ("qnnpack", 0)]
PADDING_MODES = ["zeros", "circular", "reflect"]
CONV_CLASSES = ["ConvBn2d", "ConvBnReLU2d", "ConvReLU2d"]

# Six rows per conv class: each two-valued axis takes each value three times.
# padding_mode and qconfig (three values each) are assigned per row below so
# that every value appears twice per class, with the pairing rotated per class.
#            bias   depthwise stride dilation
BASE_ROWS = [(False, False, 1, 1),
             (True, True, 2, 1),
             (False, True, 1, 2),
             (True, False, 2, 2),
             (False, False, 2, 1),
             (True, True, 1, 2)]


def conv_configs():
    configs = []
    for ci, cls_name in enumerate(CONV_CLASSES):
        for j, (bias, depthwise, stride, dilation) in enumerate(BASE_ROWS):
            backend, version = QCONFIGS[(j // 2 + ci) % 3]
            channels = (4, 4, 4) if depthwise else (4, 6, 1)
            configs.append({
                "module": cls_name,
                "in_channels": channels[0],
                "out_channels": channels[1],
                "kernel_size": 3,
                "stride": stride,
                "padding": dilation,  # keeps the output size at 9x9 for stride 1
                "dilation": dilation,
                "groups": channels[2],
                "bias": bias,
                "padding_mode": PADDING_MODES[(j + ci) % 3],
                "backend": backend,
                "qconfig_version": version,
                "input_shape": [BATCH, channels[0], SPATIAL, SPATIAL],
            })
    check_coverage(configs)
    return configs


def check_coverage(configs, classes=CONV_CLASSES):
    """Every value of every grid axis appears at least once for every conv class."""
    axes = {
        "bias": [False, True],
        "groups": [1, 4],
        "stride": [1, 2],
        "dilation": [1, 2],
        "padding_mode": PADDING_MODES,
        "qconfig": QCONFIGS,
    }
    for cls_name in classes:
        rows = [c for c in configs if c["module"] == cls_name]
        for axis, values in axes.items():
            seen = {(c["backend"], c["qconfig_version"]) if axis == "qconfig" else c[axis] for c in rows}
            assert seen == set(values), (cls_name, axis, seen)


def linear_configs():
    configs = []
    for bias, (backend, version) in ((True, QCONFIGS[0]), (False, QCONFIGS[1]),
                                     (False, QCONFIGS[2]), (True, QCONFIGS[1])):
        configs.append({
            "module": "LinearReLU",
            "in_channels": LINEAR_IN,
            "out_channels": LINEAR_OUT,
            "bias": bias,
            "backend": backend,
            "qconfig_version": version,
            "input_shape": [LINEAR_BATCH, LINEAR_IN],
        })
    return configs


def build_module(cfg):
    qconfig = get_default_qat_qconfig(cfg["backend"], cfg["qconfig_version"])
    cls = getattr(nniqat, cfg["module"])
    if cfg["module"].startswith("Linear"):  # LinearReLU, LinearBn1d
        m = cls(cfg["in_channels"], cfg["out_channels"], bias=cfg["bias"], qconfig=qconfig)
    else:
        m = cls(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"], stride=cfg["stride"],
                padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"], bias=cfg["bias"],
                padding_mode=cfg["padding_mode"], qconfig=qconfig)
    # What prepare_qat attaches after a fused module: the output fake quant
    # (applied explicitly below instead of through a forward hook).
    m.activation_post_process = qconfig.activation()
    if hasattr(m, "bn"):
        # Non-trivial BN state so the folding scale gamma / sqrt(var + eps) matters.
        with torch.no_grad():
            m.bn.weight.uniform_(0.5, 1.5)
            m.bn.bias.copy_(torch.randn(m.bn.num_features) * 0.1)
            m.bn.running_mean.copy_(torch.randn(m.bn.num_features) * 0.1)
            m.bn.running_var.uniform_(0.5, 2.0)
    if isinstance(m, nniqat.LinearBn1d) and m.bias is not None:
        # LinearBn1d's constructor leaves its bias as torch.empty (uninitialized).
        with torch.no_grad():
            m.bias.copy_(torch.randn(m.out_features) * 0.1)
    return m


def add_state(out, prefix, m):
    for k, v in m.state_dict().items():
        out[prefix + k] = to_saveable(v)


def freeze_bn(m, cfg):
    """Freeze BN statistics as the case's config says.

    Without a "freeze_bn_via" key (the modules/ cases): m.apply(nniqat.freeze_bn_stats),
    as in the QAT tutorial. That function only knows the ConvBn classes and silently
    ignores LinearBn1d, so cases with "freeze_bn_via": "module_method" call
    m.freeze_bn_stats() instead, where the module has it (for ConvBn* the two are
    equivalent; ConvReLU* and LinearReLU have no BN and no such method).
    """
    via = cfg.get("freeze_bn_via", "apply_function")
    if via == "module_method":
        if hasattr(m, "freeze_bn_stats"):
            m.freeze_bn_stats()
    elif via == "apply_function":
        m.apply(nniqat.freeze_bn_stats)
    else:
        raise ValueError("unknown freeze_bn_via %r" % via)


def train_steps(m, cfg, out, steps):
    """The QAT schedule; records everything when out is not None."""
    opt = torch.optim.SGD(m.parameters(), lr=LR, momentum=MOMENTUM)
    for k in range(steps):
        m.train()  # does not undo the BN freeze (ConvBn's / LinearBn1d's train() override)
        if k >= FREEZE_BN_FROM:
            freeze_bn(m, cfg)
        if k >= DISABLE_OBSERVER_FROM:
            m.apply(disable_observer)
        x = torch.randn(cfg["input_shape"], requires_grad=True)
        y = m.activation_post_process(m(x))
        dy = torch.randn_like(y)
        opt.zero_grad()
        y.backward(dy)
        if out is not None:
            p = "step%d/" % k
            out[p + "input"] = to_saveable(x)
            out[p + "dy"] = to_saveable(dy)
            out[p + "output"] = to_saveable(y)
            out[p + "input_grad"] = to_saveable(x.grad)
            for name, param in m.named_parameters():
                out[p + "grad/" + name] = to_saveable(param.grad)
        opt.step()
        if out is not None:
            add_state(out, "step%d/state/" % k, m)


def eval_forward(m, cfg):
    m.eval()
    x = torch.randn(cfg["input_shape"])
    with torch.no_grad():
        y = m.activation_post_process(m(x))
    return x, y


def full_config(cfg, seed):
    c = dict(cfg)
    c.update(lr=LR, momentum=MOMENTUM, steps=STEPS, freeze_bn_from_step=FREEZE_BN_FROM,
             disable_observer_from_step=DISABLE_OBSERVER_FROM, seed=seed, torch_version=TORCH_VERSION)
    return c


def case_name(i, cfg):
    if cfg["module"].startswith("Linear"):
        return "%02d_%s_%s%d_%s" % (i, cfg["module"], cfg["backend"], cfg["qconfig_version"],
                                    "bias" if cfg["bias"] else "nobias")
    name = "%02d_%s_%s%d_%s_%s_s%d_d%d_%s" % (
        i, cfg["module"], cfg["backend"], cfg["qconfig_version"], "bias" if cfg["bias"] else "nobias",
        "dw" if cfg["groups"] > 1 else "g1", cfg["stride"], cfg["dilation"], cfg["padding_mode"])
    if isinstance(cfg["kernel_size"], list):  # non-cubic kernel (modules3d/): e.g. "_k3x2x3"
        name += "_k" + "x".join(str(k) for k in cfg["kernel_size"])
    return name


def run_case(i, cfg, subdir="modules", seed_base=10000):
    seed = seed_base + i
    torch.manual_seed(seed)
    m = build_module(cfg)
    out = {}
    add_state(out, "init/", m)
    train_steps(m, cfg, out, STEPS)
    x, y = eval_forward(m, cfg)
    out["eval/input"] = to_saveable(x)
    out["eval/output"] = to_saveable(y)
    add_state(out, "eval/state/", m)
    config = full_config(cfg, seed)
    name = case_name(i, cfg) + ".safetensors"
    save_safetensors(out, out_path(subdir, name),
                     {"config": json.dumps(config), "torch_version": TORCH_VERSION})
    return name, config


def torch_saved_state():
    """A state dict written by safetensors' own torch helper, unmodified, so the
    Rust side can check it loads what PyTorch writes."""
    cfg = {
        "module": "ConvBnReLU2d", "in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 1,
        "padding": 1, "dilation": 1, "groups": 1, "bias": True, "padding_mode": "zeros",
        "backend": "fbgemm", "qconfig_version": 1, "input_shape": [BATCH, 4, SPATIAL, SPATIAL],
    }
    seed = 20000
    torch.manual_seed(seed)
    m = build_module(cfg)
    train_steps(m, cfg, None, 3)
    config = full_config(cfg, seed)
    config["steps"] = 3
    save_file(m.state_dict(), out_path("modules", "torch_saved_state.safetensors"))
    x, y = eval_forward(m, cfg)
    save_safetensors({"input": x, "output": y}, out_path("modules", "torch_saved_state_io.safetensors"),
                     {"config": json.dumps(config), "torch_version": TORCH_VERSION})
    return config


def main():
    cases = []
    for i, cfg in enumerate(conv_configs() + linear_configs()):
        name, config = run_case(i, cfg)
        cases.append({"file": name, "config": config})
        print("wrote modules/%s" % name)
    saved_cfg = torch_saved_state()
    print("wrote modules/torch_saved_state.safetensors (+ _io)")
    index = {
        "torch_version": TORCH_VERSION,
        "cases": cases,
        "torch_saved_state": {
            "state_file": "torch_saved_state.safetensors",
            "io_file": "torch_saved_state_io.safetensors",
            "config": saved_cfg,
        },
    }
    write_json(out_path("modules", "index.json"), index)


if __name__ == "__main__":
    main()
