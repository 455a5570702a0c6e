"""Checks an opset-21 export (INT4 weights) with onnx and onnxruntime against the opset-13 export
of the same int8 model (int8 weights), which the Rust tests check against the integer engine.

    burn-qat export --checkpoint RUN/int8.safetensors --out m13.onnx
    burn-qat export --checkpoint RUN/int8.safetensors --out m21.onnx --opset 21
    ~/torch-ref/bin/python tools/onnx/check_int4.py m13.onnx m21.onnx data/mnist-10k

It checks: onnx.checker accepts both; every INT4 weight of m21 unpacks (by onnx's own helper) to
the int8 weight of m13 with the same name; onnxruntime's logits of the two files agree on the
2,000 test digits. Needs onnx and onnxruntime (the golden-data virtualenv has both).
"""

import gzip
import os
import sys

import numpy as np
import onnx
import onnxruntime
from onnx import numpy_helper


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def test_images(folder):
    name = next(n for n in sorted(os.listdir(folder)) if n.startswith("t10k-images") or "test-images" in n)
    images = read_idx(os.path.join(folder, name)).astype(np.float32) / 255.0
    return images[-2000:, None, :, :]


def main(m13_path, m21_path, mnist):
    m13, m21 = onnx.load(m13_path), onnx.load(m21_path)
    for m in (m13, m21):
        onnx.checker.check_model(m, full_check=True)
    print("opsets:", m13.opset_import[0].version, m21.opset_import[0].version)
    int8_weights = {t.name: numpy_helper.to_array(t) for t in m13.graph.initializer}
    int4 = [t for t in m21.graph.initializer if t.data_type == onnx.TensorProto.INT4]
    assert int4, "no INT4 initializer in the opset-21 file"
    for t in int4:
        values = numpy_helper.to_array(t).astype(np.int8)
        assert np.array_equal(values, int8_weights[t.name]), t.name
        assert values.min() >= -8 and values.max() <= 7, t.name
    print("INT4 initializers equal to the int8 ones:", ", ".join(t.name for t in int4))

    x = test_images(mnist)
    run = lambda path: onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    l13, l21 = run(m13_path), run(m21_path)
    print("onnxruntime %s: %d digits, logits equal: %s, max |difference| %g"
          % (onnxruntime.__version__, len(x), np.array_equal(l13, l21), np.abs(l13 - l21).max()))
    assert np.array_equal(l13, l21)


if __name__ == "__main__":
    main(*sys.argv[1:4])
