"""Regenerate every golden fixture under tests/golden/.

Run from anywhere (paths are computed from this file's location):
    ~/torch-ref/bin/python tools/golden/generate_all.py
"""

import os
import sys

# Make the sibling modules importable however this script is invoked.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import conv_bn_f64  # noqa: E402
import conv_transpose_bn  # noqa: E402
import frozen_bn  # noqa: E402
import histogram_observer  # noqa: E402
import convert  # noqa: E402
import fake_quant  # noqa: E402
import learnable_fake_quant  # noqa: E402
import modules  # noqa: E402
import modules1d  # noqa: E402
import modules3d  # noqa: E402
import observers  # noqa: E402
import qparams  # noqa: E402
import same_padding_values  # noqa: E402
from common import GOLDEN_DIR, TORCH_VERSION  # noqa: E402

SIZE_LIMIT = 5_000_000  # bytes, for all fixtures together


def total_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main():
    print("torch", TORCH_VERSION)
    # Each generator seeds itself, so the order here does not affect the output.
    for gen in (fake_quant, learnable_fake_quant, qparams, observers, histogram_observer, modules, modules1d, modules3d, conv_bn_f64, conv_transpose_bn,
                convert, frozen_bn, same_padding_values):
        gen.main()
    size = total_size(GOLDEN_DIR)
    print("tests/golden: %d bytes" % size)
    if size >= SIZE_LIMIT:
        sys.exit("golden fixtures exceed %d bytes" % SIZE_LIMIT)


if __name__ == "__main__":
    main()
