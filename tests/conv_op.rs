//! `ops::conv2d` (this crate's convolution with its own backward) against burn's stock `conv2d`,
//! whose forward and gradients are checked against PyTorch (max relative error 5e-7): forward,
//! grad input, grad weight and grad bias on many geometries; bit-identical results for any
//! thread count; burn's own path for f64.

use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_qat::ops::conv2d;

/// One convolution call: `x [n, c_in, h, w]`, `kernel [kh, kw]`, and burn's options.
#[derive(Clone, Debug)]
struct Case {
    n: usize,
    c_in: usize,
    c_out: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    options: ConvOptions<2>,
    bias: bool,
}

/// A case: `n` images of `[c_in, c_out]` channels, `hw` pixels, a `k x k` kernel with the
/// window `[stride, pad, dilation, groups]` (the same along both axes), and a bias or not.
fn case(n: usize, [c_in, c_out]: [usize; 2], hw: [usize; 2], k: usize, [stride, pad, dil, groups]: [usize; 4], bias: bool) -> Case {
    let options = ConvOptions::new([stride; 2], [pad; 2], [dil; 2], groups);
    Case { n, c_in, c_out, hw, kernel: [k, k], options, bias }
}

fn cases() -> Vec<Case> {
    let mut all = vec![
        // dense
        case(2, [3, 8], [9, 7], 3, [1, 1, 1, 1], true),
        case(2, [4, 6], [11, 9], 3, [2, 1, 1, 1], false),
        case(2, [5, 4], [8, 8], 3, [1, 0, 1, 1], true),
        case(2, [3, 4], [10, 12], 5, [1, 2, 1, 1], false),
        case(2, [3, 5], [9, 10], 5, [2, 2, 1, 1], true),
        case(2, [4, 4], [12, 10], 3, [1, 2, 2, 1], true),
        case(2, [4, 3], [13, 11], 3, [2, 1, 2, 1], false),
        case(1, [3, 4], [5, 5], 3, [1, 2, 1, 1], true),
        case(1, [16, 32], [8, 8], 3, [1, 1, 1, 1], false),
        case(9, [3, 4], [6, 7], 3, [1, 1, 1, 1], true),
        // im2col in several tiles of output rows (K * ow * rows above the tile size)
        case(2, [64, 8], [32, 32], 3, [1, 1, 1, 1], true),
        case(2, [64, 8], [33, 31], 3, [2, 1, 1, 1], false),
        case(1, [128, 16], [20, 19], 3, [1, 2, 2, 2], true),
        case(1, [32, 8], [40, 40], 5, [1, 2, 1, 1], true),
        // 1x1: pointwise (no im2col), strided, padded
        case(2, [8, 16], [7, 5], 1, [1, 0, 1, 1], true),
        case(2, [8, 4], [7, 7], 1, [2, 0, 1, 1], false),
        case(1, [4, 4], [5, 5], 1, [1, 1, 1, 1], true),
        case(1, [6, 6], [5, 6], 1, [1, 0, 1, 2], false),
        // grouped
        case(2, [4, 6], [9, 9], 3, [1, 1, 1, 2], true),
        case(2, [8, 8], [13, 11], 3, [2, 1, 2, 4], false),
        case(1, [8, 12], [7, 9], 5, [1, 2, 1, 4], true),
        // depthwise, channel multiplier 1 and 2
        case(2, [6, 6], [10, 9], 3, [1, 1, 1, 6], true),
        case(2, [4, 8], [9, 11], 3, [2, 1, 1, 4], false),
        case(2, [3, 3], [12, 12], 5, [1, 2, 2, 3], false),
        case(1, [5, 10], [8, 7], 3, [2, 0, 1, 5], true),
        case(1, [4, 4], [7, 7], 5, [2, 2, 2, 4], true),
        case(2, [4, 4], [6, 6], 1, [1, 0, 1, 4], true),
        case(3, [8, 8], [32, 32], 3, [1, 1, 1, 8], false),
        case(2, [3, 6], [9, 37], 3, [1, 1, 1, 3], true),
        case(2, [2, 4], [20, 17], 5, [1, 2, 2, 2], false),
        case(1, [2, 2], [5, 5], 1, [1, 2, 1, 2], true),
        case(2, [3, 3], [9, 9], 3, [1, 3, 1, 3], true),
        // one input channel, groups 1: the depthwise kernels with a channel multiplier of 16
        case(2, [1, 16], [28, 28], 3, [1, 1, 1, 1], true),
    ];
    // A rectangular kernel with asymmetric (begin, end) padding.
    let mut options = ConvOptions::new([1, 2], [0, 0], [1, 1], 1);
    options.padding = [(1, 0), (0, 2)];
    all.push(Case { n: 2, c_in: 3, c_out: 4, hw: [7, 9], kernel: [1, 3], options, bias: true });
    all
}

/// Deterministic data in [-1, 1) from a small LCG.
fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data(shape.iter().product(), seed), shape), device)
}

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// Forward output and the gradients of input, weight and bias of `sum(conv(x) * r)`.
type Run = [Vec<f32>; 4];

fn run(c: &Case, conv: fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>, x_grad: bool) -> Run {
    let device = Device::flex().autodiff();
    let [h, w] = c.hw;
    let x = tensor([c.n, c.c_in, h, w], 1, &device);
    let x = if x_grad { x.require_grad() } else { x };
    let weight = tensor([c.c_out, c.c_in / c.options.groups, c.kernel[0], c.kernel[1]], 2, &device).require_grad();
    let bias = c.bias.then(|| tensor([c.c_out], 3, &device).require_grad());
    let y = conv(x.clone(), weight.clone(), bias.clone(), c.options.clone());
    let r = tensor(y.dims(), 4, &device);
    let grads = (y.clone() * r).sum().backward();
    let grad = |g: Option<Tensor<4>>| g.map(|g| values(&g)).unwrap_or_default();
    let db = bias.and_then(|b| b.grad(&grads)).map(|g| values(&g)).unwrap_or_default();
    [values(&y), grad(x.grad(&grads)), grad(weight.grad(&grads)), db]
}

fn stock(x: Tensor<4>, w: Tensor<4>, b: Option<Tensor<1>>, o: ConvOptions<2>) -> Tensor<4> {
    burn::tensor::module::conv2d(x, w, b, o)
}

/// `|actual - expected| <= 1e-5 * max|expected|` everywhere.
fn assert_close(what: &str, c: &Case, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length, case {c:?}");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let worst = actual.iter().zip(expected).map(|(a, e)| (a - e).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-5 * scale, "{what}: max error {worst} over max |value| {scale}, case {c:?}");
}

#[test]
fn forward_and_gradients_match_burn() {
    for c in cases() {
        let (ours, theirs) = (run(&c, conv2d, true), run(&c, stock, true));
        for (i, what) in ["output", "grad input", "grad weight", "grad bias"].into_iter().enumerate() {
            assert_close(what, &c, &ours[i], &theirs[i]);
        }
    }
}

#[test]
fn an_input_without_gradient_still_gives_weight_and_bias_gradients() {
    for c in [case(2, [3, 4], [6, 6], 3, [1, 1, 1, 1], true), case(2, [4, 4], [6, 6], 3, [1, 1, 1, 4], true)] {
        let (ours, theirs) = (run(&c, conv2d, false), run(&c, stock, false));
        assert!(ours[1].is_empty());
        assert_close("grad weight", &c, &ours[2], &theirs[2]);
        assert_close("grad bias", &c, &ours[3], &theirs[3]);
    }
}

#[test]
fn results_are_bit_identical_for_any_thread_count() {
    let pool = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    for c in [case(13, [8, 16], [12, 12], 3, [1, 1, 1, 1], true), case(13, [8, 16], [12, 12], 3, [2, 1, 1, 8], true)] {
        let one = pool(1).install(|| run(&c, conv2d, true));
        let three = pool(3).install(|| run(&c, conv2d, true));
        let again = pool(3).install(|| run(&c, conv2d, true));
        for i in 0..4 {
            let bits = |r: &Run| r[i].iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one), bits(&three), "part {i} differs between 1 and 3 threads, case {c:?}");
            assert_eq!(bits(&three), bits(&again), "part {i} differs run to run, case {c:?}");
        }
    }
}

#[test]
fn f64_tensors_take_burns_convolution() {
    let device = Device::flex().autodiff();
    let x = tensor([2, 3, 7, 7], 1, &device).cast(DType::F64);
    let w = tensor([4, 3, 3, 3], 2, &device).cast(DType::F64);
    let options = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
    let ours = conv2d(x.clone(), w.clone(), None, options.clone());
    let theirs = stock(x, w, None, options);
    assert_eq!(ours.dtype(), DType::F64);
    assert_eq!(ours.to_data(), theirs.to_data());
}
