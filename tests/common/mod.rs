//! Helpers shared by the golden tests: fixture loading and tensor conversion.
#![allow(dead_code)]

pub mod road;

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use burn_qat::state_dict::{StateDict, TensorValue, load_safetensors};

pub fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

pub fn load_golden(name: &str) -> (StateDict, HashMap<String, String>) {
    load_safetensors(golden_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn get<'a>(state: &'a StateDict, key: &str) -> &'a TensorValue {
    state.get(key).unwrap_or_else(|| panic!("fixture has no key {key:?}"))
}

pub fn f32s(state: &StateDict, key: &str) -> Vec<f32> {
    get(state, key).as_f32().unwrap_or_else(|| panic!("{key} is not f32")).to_vec()
}

pub fn ints(state: &StateDict, key: &str) -> Vec<i64> {
    get(state, key).to_f64_vec().iter().map(|&v| v as i64).collect()
}

pub fn tensor<const D: usize>(state: &StateDict, key: &str, device: &Device) -> Tensor<D> {
    let t = get(state, key);
    Tensor::from_data(TensorData::new(t.as_f32().expect("f32").to_vec(), t.shape.clone()), device)
}

pub fn to_vec<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data")
}

/// Asserts `|a - b| <= atol + rtol * |b|` elementwise, reporting the worst element.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], rtol: f32, atol: f32) {
    assert_close_floor(what, actual, expected, rtol, atol, 0.0);
}

/// The f32 noise floor of a reduction (a convolution's weight gradient sums hundreds of terms):
/// different summation orders differ by a few ulps of the *largest* values involved, which for
/// an element near zero is far beyond `rtol * |b|`. 1e-6 of the tensor's largest magnitude is
/// about 8 ulps of it: summation noise passes, any real error (a wrong term, a 1-LSB
/// quantization flip) does not.
pub const REDUCTION_NOISE: f32 = 1e-6;

/// [`assert_close`] with an extra absolute allowance of `floor * max|b|`.
pub fn assert_close_floor(what: &str, actual: &[f32], expected: &[f32], rtol: f32, atol: f32, floor: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let atol = atol + floor * scale;
    let mut worst: Option<(usize, f32)> = None;
    let mut bad = 0;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (a - e).abs();
        let excess = err - (atol + rtol * e.abs());
        if !(excess <= 0.0) {
            bad += 1;
            if worst.is_none_or(|(_, w)| excess > w || excess.is_nan()) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: {bad}/{} elements outside rtol {rtol} / atol {atol}; worst at {i}: got {} expected {}",
            actual.len(),
            actual[i],
            expected[i]
        );
    }
}

/// Two trainings through fake quantization that differ only in float summation order (two
/// devices) stay close, except where a value fell within float noise of a rounding tie: there
/// one side rounds up and the other down, one quantized activation moves by a whole step, and
/// every later step carries that difference. Such elements are rare, and still bounded by a few
/// percent of the tensor's largest value; a wrong kernel moves most elements, or moves some far.
pub fn assert_close_except_rare_flips(what: &str, actual: &[f32], expected: &[f32], rtol: f32, atol: f32) {
    const MAX_FRACTION: f32 = 0.02;
    const BOUND_OF_MAX: f32 = 0.05;
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let outside: Vec<usize> =
        (0..actual.len()).filter(|&i| !((actual[i] - expected[i]).abs() <= atol + rtol * expected[i].abs())).collect();
    let allowed = (MAX_FRACTION * actual.len() as f32).floor() as usize;
    assert!(
        outside.len() <= allowed,
        "{what}: {}/{} elements outside rtol {rtol} / atol {atol} (at most {allowed} may flip); first at {}: got {} expected {}",
        outside.len(),
        actual.len(),
        outside[0],
        actual[outside[0]],
        expected[outside[0]]
    );
    for &i in &outside {
        assert!(
            (actual[i] - expected[i]).abs() <= BOUND_OF_MAX * scale,
            "{what}: element {i} moved by more than {BOUND_OF_MAX} of the tensor's largest value {scale}: got {} expected {}",
            actual[i],
            expected[i]
        );
    }
}

/// Asserts bit equality (so -0.0 and 0.0 differ, NaN payloads matter).
pub fn assert_bits_eq(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let diffs: Vec<usize> = (0..actual.len()).filter(|&i| actual[i].to_bits() != expected[i].to_bits()).collect();
    if let Some(&i) = diffs.first() {
        panic!("{what}: {} of {} elements differ; first at {i}: got {:e} expected {:e}", diffs.len(), actual.len(), actual[i], expected[i]);
    }
}

pub fn f64s(state: &StateDict, key: &str) -> Vec<f64> {
    get(state, key).to_f64_vec()
}

/// An f64 tensor from an f64 fixture entry.
pub fn tensor_f64<const D: usize>(state: &StateDict, key: &str, device: &Device) -> Tensor<D> {
    let t = get(state, key);
    Tensor::from_data(TensorData::new(t.to_f64_vec(), t.shape.clone()), (device, burn::tensor::DType::F64))
}

pub fn to_vec_f64<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_into_vec::<f64>().expect("f64 data")
}

/// Asserts `|a - b| <= atol` elementwise in f64.
pub fn assert_close_f64(what: &str, actual: &[f64], expected: &[f64], atol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let worst =
        actual.iter().zip(expected).map(|(a, e)| (a - e).abs()).fold(0.0f64, |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) });
    assert!(worst <= atol, "{what}: max |diff| {worst:e} > {atol:e}");
}

/// burn's random generator is global: tests that draw from it hold this lock for their whole
/// run, so that parallel tests do not interleave draws and each run builds the same models.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The small residual CNN several tests share (the structure of tools/golden/convert.py's Net):
/// QuantStub, Conv-BN-ReLU, a basic block ending in ReLU, MaxPool, Flatten, Linear-ReLU,
/// Linear, DeQuantStub, on `[N, 1, 12, 12]` images.
pub fn small_cnn(device: &Device, padding_mode: burn_qat::nn::PaddingMode) -> burn_qat::workflow::FloatModel {
    use burn_qat::nn::Conv2dOptions;
    use burn_qat::workflow::{FloatModel, Layer};
    let conv =
        |cin, cout| Layer::conv2d(Conv2dOptions::new(cin, cout, 3).with_padding(1).with_padding_mode(padding_mode), false, device).unwrap();
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv1", conv(1, 8)),
        ("bn1", Layer::batch_norm2d(8, device).unwrap()),
        ("relu1", Layer::Relu(Default::default())),
        (
            "block",
            Layer::residual(
                vec![
                    ("conv_a", conv(8, 8)),
                    ("bn_a", Layer::batch_norm2d(8, device).unwrap()),
                    ("relu_a", Layer::Relu(Default::default())),
                    ("conv_b", conv(8, 8)),
                    ("bn_b", Layer::batch_norm2d(8, device).unwrap()),
                ],
                true,
            ),
        ),
        ("pool", Layer::max_pool2d(2, 2).unwrap()),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc1", Layer::linear(8 * 6 * 6, 32, true, device).unwrap()),
        ("relu2", Layer::Relu(Default::default())),
        ("fc2", Layer::linear(32, 10, true, device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

/// tools/golden/convert.py's `Net(biased=True)`: conv1 with a bias, fc1 followed by a
/// BatchNorm1d (fused into LinearBn1d) and a separate ReLU.
pub fn biased_cnn(device: &Device, padding_mode: burn_qat::nn::PaddingMode) -> burn_qat::workflow::FloatModel {
    use burn_qat::nn::Conv2dOptions;
    use burn_qat::workflow::{FloatModel, Layer};
    let conv = |cin, cout, bias| {
        Layer::conv2d(Conv2dOptions::new(cin, cout, 3).with_padding(1).with_padding_mode(padding_mode), bias, device).unwrap()
    };
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv1", conv(1, 8, true)),
        ("bn1", Layer::batch_norm2d(8, device).unwrap()),
        ("relu1", Layer::Relu(Default::default())),
        (
            "block",
            Layer::residual(
                vec![
                    ("conv_a", conv(8, 8, false)),
                    ("bn_a", Layer::batch_norm2d(8, device).unwrap()),
                    ("relu_a", Layer::Relu(Default::default())),
                    ("conv_b", conv(8, 8, false)),
                    ("bn_b", Layer::batch_norm2d(8, device).unwrap()),
                ],
                true,
            ),
        ),
        ("pool", Layer::max_pool2d(2, 2).unwrap()),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc1", Layer::linear(8 * 6 * 6, 32, true, device).unwrap()),
        ("bn_fc", Layer::batch_norm1d(32, device).unwrap()),
        ("relu2", Layer::Relu(Default::default())),
        ("fc2", Layer::linear(32, 10, true, device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

/// A small deterministic generator (splitmix64), so that generated cases are the same on every
/// run and machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
}

/// Asserts that `result` is an error matching `pattern` (a `QatError` variant, with an optional
/// guard), printing the error it got otherwise: an `is_err()` would pass on any error at all.
#[allow(unused_macros)]
macro_rules! assert_error {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        assert_error!($result, $pattern $(if $guard)?, "")
    };
    ($result:expr, $pattern:pat $(if $guard:expr)?, $($msg:tt)+) => {
        match $result {
            Err(e) => assert!(matches!(&e, $pattern $(if $guard)?), "unexpected error {e:?}: {}", format!($($msg)+)),
            Ok(_) => panic!("expected an error, got Ok: {}", format!($($msg)+)),
        }
    };
}

/// The devices the device-generic tests run on: the CPU, and with the `wgpu` feature the wgpu
/// device too (in CI, the software Vulkan device lavapipe).
#[allow(dead_code)]
pub fn devices() -> Vec<Device> {
    #[allow(unused_mut)]
    let mut out = vec![Device::flex()];
    #[cfg(feature = "wgpu")]
    out.push(wgpu_device());
    out
}

/// The wgpu device the GPU-path tests use.
#[cfg(feature = "wgpu")]
#[allow(dead_code)]
pub fn wgpu_device() -> Device {
    burn_qat::device::Accelerator::Wgpu.device(0).expect("built with the wgpu feature")
}
