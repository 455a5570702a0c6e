"""Golden data for the 1-d fused QAT modules: ConvBn1d, ConvBnReLU1d, ConvReLU1d
and LinearBn1d.

Same procedure, key scheme and config fields as modules.py (whose functions do
the work): five SGD steps with BN freezing from step 3 and observers off from
step 4, then one eval forward. Writes tests/golden/modules1d/<case>.safetensors
and modules1d/index.json.

Differences from modules.py:
  * every config has "freeze_bn_via": "module_method": BN is frozen by calling
    m.freeze_bn_stats() (where the module has it) rather than
    m.apply(nniqat.freeze_bn_stats), because that function ignores LinearBn1d.
    For ConvBn1d / ConvBnReLU1d the two are equivalent; ConvReLU1d has no BN.
  * LinearBn1d's constructor leaves the linear bias uninitialized (torch.empty);
    build_module sets it to randn * 0.1 (seeded) before init/ is recorded.
  * LinearBn1d's in/out features are stored as in_channels/out_channels (as for
    LinearReLU in modules/).
"""

import modules as gen
from common import TORCH_VERSION, out_path, write_json

SUBDIR = "modules1d"
SEED_BASE = 30000
LENGTH = 11
FREEZE_BN_VIA = "module_method"
CONV_CLASSES = ["ConvBn1d", "ConvBnReLU1d", "ConvReLU1d"]

# Three rows per conv class, so each class covers both values of every
# two-valued axis (rows 0 and 1 are complements) and all three padding modes and
# qconfigs. The third row and the row order differ per class to vary the pairings.
#                  bias   depthwise stride dilation
CONV_ROWS = {
    "ConvBn1d":     [(False, False, 1, 1),
                     (True, True, 2, 2),
                     (True, False, 2, 1)],
    "ConvBnReLU1d": [(False, True, 1, 2),
                     (True, False, 2, 1),
                     (False, False, 1, 2)],
    "ConvReLU1d":   [(True, True, 1, 1),
                     (False, False, 2, 2),
                     (False, True, 2, 1)],
}


def conv_configs():
    configs = []
    for ci, cls_name in enumerate(CONV_CLASSES):
        for j, (bias, depthwise, stride, dilation) in enumerate(CONV_ROWS[cls_name]):
            # (padding_mode, qconfig) = ((j + ci) % 3, (j + 2 ci) % 3): all 9 pairs over the 9 cases.
            backend, version = gen.QCONFIGS[(j + 2 * ci) % 3]
            channels = (4, 4, 4) if depthwise else (4, 6, 1)
            configs.append({
                "module": cls_name,
                "in_channels": channels[0],
                "out_channels": channels[1],
                "kernel_size": 3,
                "stride": stride,
                "padding": dilation,  # keeps the output length at 11 for stride 1
                "dilation": dilation,
                "groups": channels[2],
                "bias": bias,
                "padding_mode": gen.PADDING_MODES[(j + ci) % 3],
                "backend": backend,
                "qconfig_version": version,
                "input_shape": [gen.BATCH, channels[0], LENGTH],
                "freeze_bn_via": FREEZE_BN_VIA,
            })
    gen.check_coverage(configs, CONV_CLASSES)
    pairs = {(c["padding_mode"], c["backend"], c["qconfig_version"]) for c in configs}
    assert len(pairs) == 9, pairs
    return configs


def linear_configs():
    return [{
        "module": "LinearBn1d",
        "in_channels": gen.LINEAR_IN,
        "out_channels": gen.LINEAR_OUT,
        "bias": True,
        "backend": backend,
        "qconfig_version": version,
        "input_shape": [gen.LINEAR_BATCH, gen.LINEAR_IN],
        "freeze_bn_via": FREEZE_BN_VIA,
    } for backend, version in gen.QCONFIGS]


def main():
    cases = []
    for i, cfg in enumerate(conv_configs() + linear_configs()):
        name, config = gen.run_case(i, cfg, SUBDIR, SEED_BASE)
        cases.append({"file": name, "config": config})
        print("wrote %s/%s" % (SUBDIR, name))
    write_json(out_path(SUBDIR, "index.json"), {"torch_version": TORCH_VERSION, "cases": cases})


if __name__ == "__main__":
    main()
