"""Golden data for the 3-d fused QAT modules: ConvBn3d, ConvBnReLU3d, ConvReLU3d.

Same procedure, key scheme and config fields as modules.py (whose functions do
the work) and modules1d.py: five SGD steps with BN freezing from step 3 (via
the module method, "freeze_bn_via": "module_method") and observers off from
step 4, then one eval forward. Writes tests/golden/modules3d/<case>.safetensors
and modules3d/index.json.

Shapes are tiny to keep the files small: input [2, C, 4, 3, 3] (batch 2,
D x H x W = 4 x 3 x 3), padding 1, 2 -> 3 channels (depthwise: 2 -> 2,
groups 2). kernel_size is the int 3, or the list [3, 2, 3] in one case
(non-cubic kernel); stride, padding and dilation are ints (the same value on
all three spatial axes).

The spatial size is 4 x 3 x 3 rather than 5 x 5 x 5 because of the size budget
(about 200 KB for the six files): about 100 KB of that is safetensors headers
(~130-190 keys per case), and 5 x 5 x 5 gave 337 KB. D != H = W, and in the
non-cubic case the output is 2 x 3 x 1, so a D/H/W mix-up changes the shapes.
The stride-2, dilation-2 case has a 1 x 1 x 1 output (BN then sees 2 values per
channel, so the unbiased running_var factor is 2).

padding_mode covers zeros and circular only. (reflect also works for 5-D input
in torch 2.15, forward and backward, but is not part of this grid.)
"""

import modules as gen
from common import TORCH_VERSION, out_path, write_json

SUBDIR = "modules3d"
SEED_BASE = 40000
BATCH = 2
SPATIAL = [4, 3, 3]  # D, H, W
FREEZE_BN_VIA = "module_method"
CONV_CLASSES = ["ConvBn3d", "ConvBnReLU3d", "ConvReLU3d"]
PADDING_MODES = ["zeros", "circular"]
NON_CUBIC_KERNEL = [3, 2, 3]

# Two rows per class; the rows of a class are complements, so each class covers
# both values of every two-valued axis. The pairings differ per class. The last
# column marks the one case with the non-cubic kernel.
#                  bias   depthwise stride dilation padding_mode non_cubic
CONV_ROWS = {
    "ConvBn3d":     [(False, False, 1, 1, "zeros", False),
                     (True, True, 2, 2, "circular", False)],
    "ConvBnReLU3d": [(False, True, 2, 1, "circular", False),
                     (True, False, 1, 2, "zeros", True)],
    "ConvReLU3d":   [(True, False, 2, 1, "zeros", False),
                     (False, True, 1, 2, "circular", False)],
}


def check_coverage(configs):
    axes = {
        "bias": [False, True],
        "groups": [1, 2],
        "stride": [1, 2],
        "dilation": [1, 2],
        "padding_mode": PADDING_MODES,
    }
    for cls_name in CONV_CLASSES:
        rows = [c for c in configs if c["module"] == cls_name]
        for axis, values in axes.items():
            seen = {c[axis] for c in rows}
            assert seen == set(values), (cls_name, axis, seen)
    qconfigs = [(c["backend"], c["qconfig_version"]) for c in configs]
    assert sorted(qconfigs) == sorted(gen.QCONFIGS * 2), qconfigs
    assert sum(isinstance(c["kernel_size"], list) for c in configs) == 1


def conv_configs():
    configs = []
    for ci, cls_name in enumerate(CONV_CLASSES):
        for j, (bias, depthwise, stride, dilation, padding_mode, non_cubic) in enumerate(CONV_ROWS[cls_name]):
            # (j + 2 ci) % 3 gives each qconfig to two cases, never twice to one class.
            backend, version = gen.QCONFIGS[(j + 2 * ci) % 3]
            channels = (2, 2, 2) if depthwise else (2, 3, 1)
            configs.append({
                "module": cls_name,
                "in_channels": channels[0],
                "out_channels": channels[1],
                "kernel_size": list(NON_CUBIC_KERNEL) if non_cubic else 3,
                "stride": stride,
                "padding": 1,
                "dilation": dilation,
                "groups": channels[2],
                "bias": bias,
                "padding_mode": padding_mode,
                "backend": backend,
                "qconfig_version": version,
                "input_shape": [BATCH, channels[0]] + SPATIAL,
                "freeze_bn_via": FREEZE_BN_VIA,
            })
    check_coverage(configs)
    return configs


def main():
    cases = []
    for i, cfg in enumerate(conv_configs()):
        name, config = gen.run_case(i, cfg, SUBDIR, SEED_BASE)
        cases.append({"file": name, "config": config})
        print("wrote %s/%s" % (SUBDIR, name))
    write_json(out_path(SUBDIR, "index.json"), {"torch_version": TORCH_VERSION, "cases": cases})


if __name__ == "__main__":
    main()
