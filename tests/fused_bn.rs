//! The fused batch-norm training ops against the composed reference path (the same module with
//! `bn.use_fused_kernels(false)`): outputs, every gradient, the running statistics and the
//! output observer, in f32 and f64, for QAT ConvBn(ReLU)2d and for plain BatchNorm; and the
//! fused ops give the same bits for any rayon thread count.

#[macro_use]
mod common;

use burn::tensor::{DType, Device, Distribution, Tensor};
use burn_qat::QatError;
use burn_qat::nn::intrinsic::qat::{ConvBn2d, ConvBn2dConfig};
use burn_qat::nn::{BatchNorm, Conv2dOptions};
use burn_qat::qconfig::get_default_qat_qconfig;
use burn_qat::state_dict::{LoadStateDict, SaveStateDict, TensorValue, Values};

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_into_vec::<f64>().unwrap()
}

/// `|a - b| <= atol + rtol * max |b|` element by element (the scale of a whole tensor: sums
/// near zero differ by more than their own size relative to it).
fn close(what: &str, a: &[f64], b: &[f64], rtol: f64, atol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= atol + rtol * scale, "{what}[{i}]: fused {x} vs reference {y} (scale {scale})");
    }
}

fn conv_bn(bias: bool, groups: usize, device: &Device) -> ConvBn2d {
    let options = Conv2dOptions::new(8, 8, 3).with_padding(1).with_groups(groups);
    ConvBn2dConfig::new(options, get_default_qat_qconfig("fbgemm", 1).unwrap())
        .with_bias(bias)
        .init(device)
        .unwrap()
        .with_output_fake_quant()
        .unwrap()
}

/// Every float parameter and BN buffer of `m` as f64.
fn to_f64(m: &mut ConvBn2d) {
    let state = m.state_dict();
    let wanted = ["weight", "bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"];
    let converted = state
        .into_iter()
        .map(|(k, v)| match &v.values {
            Values::F32(f) if wanted.contains(&k.as_str()) => {
                let values = Values::F64(f.iter().map(|&x| x as f64).collect());
                (k, TensorValue { shape: v.shape.clone(), values })
            }
            _ => (k, v),
        })
        .collect();
    m.load_state_dict(&converted).unwrap();
}

/// Three training steps of a fused and a reference copy of one module on the same inputs.
fn compare_conv_bn(bias: bool, groups: usize, relu: bool, dtype: DType, rtol: f64, atol: f64) {
    let device = Device::flex().autodiff();
    let mut fused = conv_bn(bias, groups, &device);
    if dtype == DType::F64 {
        to_f64(&mut fused);
    }
    let mut reference = fused.clone();
    reference.bn.use_fused_kernels(false);
    assert!(fused.bn.uses_fused_kernels());
    let label = format!("bias {bias} groups {groups} relu {relu} {dtype:?}");
    for step in 0..3 {
        let what = |s: &str| format!("{label} step {step} {s}");
        let x = Tensor::<4>::random([4, 8, 6, 5], Distribution::Normal(0.5, 2.0), (&device, dtype));
        let dy = Tensor::<4>::random([4, 8, 6, 5], Distribution::Normal(0.0, 1.0), (&device, dtype));
        let run = |m: &mut ConvBn2d| {
            let x = x.clone().require_grad();
            let y = m.forward_with_relu(x.clone(), relu).unwrap();
            let grads = (y.clone() * dy.clone()).sum().backward();
            let mut g = vec![values(&x.grad(&grads).unwrap()), values(&m.weight.val().grad(&grads).unwrap())];
            g.push(values(&m.bn.weight.val().grad(&grads).unwrap()));
            g.push(values(&m.bn.bias.val().grad(&grads).unwrap()));
            if let Some(b) = &m.bias {
                g.push(b.val().grad(&grads).map(|g| values(&g)).unwrap_or_else(|| vec![0.0; 8]));
            }
            (values(&y), g)
        };
        let (yf, gf) = run(&mut fused);
        let (yr, gr) = run(&mut reference);
        close(&what("output"), &yf, &yr, rtol, atol);
        for (i, name) in ["grad x", "grad weight", "grad gamma", "grad beta"].iter().enumerate() {
            close(&what(name), &gf[i], &gr[i], rtol, atol);
        }
        if bias {
            // Mathematically zero (BN removes a per-channel shift): both are rounding noise.
            close(&what("grad bias"), &gf[4], &gr[4], 0.0, 1e-4 * gf[2].iter().fold(1.0f64, |m, v| m.max(v.abs())));
        }
        assert_eq!(fused.bn.running_mean(), reference.bn.running_mean(), "{}", what("running mean"));
        assert_eq!(fused.bn.running_var(), reference.bn.running_var(), "{}", what("running var"));
        assert_eq!(fused.bn.num_batches_tracked(), reference.bn.num_batches_tracked());
        let (of, or) =
            (&fused.activation_post_process.as_ref().unwrap().observer, &reference.activation_post_process.as_ref().unwrap().observer);
        let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        close(&what("output min"), &f(of.min_val()), &f(or.min_val()), rtol, atol);
        close(&what("output max"), &f(of.max_val()), &f(or.max_val()), rtol, atol);
        assert_eq!(fused.weight_fake_quant.observer.min_val(), reference.weight_fake_quant.observer.min_val());
        assert_eq!(fused.weight_fake_quant.observer.max_val(), reference.weight_fake_quant.observer.max_val());
    }
}

/// `forward` of ConvBn2d, or of ConvBnReLU2d (the same module with the ReLU fused in).
trait ForwardWithRelu {
    fn forward_with_relu(&mut self, x: Tensor<4>, relu: bool) -> burn_qat::error::Result<Tensor<4>>;
}

impl ForwardWithRelu for ConvBn2d {
    fn forward_with_relu(&mut self, x: Tensor<4>, relu: bool) -> burn_qat::error::Result<Tensor<4>> {
        if relu {
            let mut m = burn_qat::nn::intrinsic::qat::ConvBnReLU2d { inner: self.clone() };
            let y = m.forward(x);
            *self = m.inner;
            y
        } else {
            self.forward(x)
        }
    }
}

#[test]
fn conv_bn_relu_f32_matches_the_reference() {
    for (bias, groups, relu) in [(false, 1, true), (true, 1, true), (false, 1, false), (true, 8, true), (false, 2, false)] {
        compare_conv_bn(bias, groups, relu, DType::F32, 2e-5, 1e-6);
    }
}

#[test]
fn conv_bn_relu_f64_matches_the_reference() {
    for (bias, groups, relu) in [(false, 1, true), (true, 1, true), (true, 8, false)] {
        compare_conv_bn(bias, groups, relu, DType::F64, 1e-11, 1e-13);
    }
}

fn compare_batch_norm<const D: usize>(shape: [usize; D], dtype: DType, rtol: f64) {
    let device = Device::flex().autodiff();
    let c = shape[1];
    let mut fused = BatchNorm::new(c, 1e-5, Some(0.1), &device).unwrap();
    let gamma = Tensor::<1>::random([c], Distribution::Uniform(-1.0, 2.0), (&device, dtype));
    let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 1.0), (&device, dtype));
    fused.weight = burn::module::Param::from_tensor(gamma);
    fused.bias = burn::module::Param::from_tensor(beta);
    let mut reference = fused.clone();
    reference.use_fused_kernels(false);
    for step in 0..2 {
        let what = format!("BatchNorm {shape:?} {dtype:?} step {step}");
        let x = Tensor::<D>::random(shape, Distribution::Normal(-1.0, 3.0), (&device, dtype));
        let dy = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), (&device, dtype));
        let run = |bn: &mut BatchNorm| {
            let x = x.clone().require_grad();
            let y = bn.forward(x.clone(), "bn").unwrap();
            let grads = (y.clone() * dy.clone()).sum().backward();
            let gamma = bn.weight.val().grad(&grads).unwrap();
            [values(&y), values(&x.grad(&grads).unwrap()), values(&gamma), values(&bn.bias.val().grad(&grads).unwrap())]
        };
        let (a, b) = (run(&mut fused), run(&mut reference));
        for (i, name) in ["output", "grad x", "grad gamma", "grad beta"].iter().enumerate() {
            close(&format!("{what} {name}"), &a[i], &b[i], rtol, rtol * 0.1);
        }
        assert_eq!(fused.running_mean(), reference.running_mean(), "{what}");
        assert_eq!(fused.running_var(), reference.running_var(), "{what}");
    }
}

#[test]
fn batch_norm_matches_the_reference() {
    compare_batch_norm([16, 5], DType::F32, 2e-5);
    compare_batch_norm([3, 4, 7, 9], DType::F32, 2e-5);
    compare_batch_norm([2, 3, 4, 5, 6], DType::F32, 2e-5);
    compare_batch_norm([16, 5], DType::F64, 1e-11);
    compare_batch_norm([3, 4, 7, 9], DType::F64, 1e-11);
}

/// One ConvBnReLU2d step (forward, backward) on a rayon pool of `threads`: every bit that
/// comes out.
fn step_bits(threads: usize) -> Vec<u64> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let device = Device::flex().autodiff();
        let mut m = burn_qat::nn::intrinsic::qat::ConvBnReLU2d { inner: conv_bn(true, 1, &device) };
        // The same parameters in every pool: overwrite the random init with fixed values.
        let mut state = m.inner.state_dict();
        for (k, v) in state.iter_mut() {
            if let Values::F32(f) = &mut v.values
                && (k.ends_with("weight") || k.ends_with("bias"))
            {
                for (i, x) in f.iter_mut().enumerate() {
                    *x = ((i * 37 % 101) as f32 - 50.0) / 173.0 + if k == "bn.weight" { 1.0 } else { 0.0 };
                }
            }
        }
        m.inner.load_state_dict(&state).unwrap();
        let data: Vec<f32> = (0..16 * 8 * 33 * 17).map(|i| (((i * 7919) % 2003) as f32 - 1001.0) / 313.0).collect();
        let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(data, [16, 8, 33, 17]), &device).require_grad();
        let y = m.forward(x.clone()).unwrap();
        let grads = (y.clone() * y.clone()).sum().backward();
        let mut bits: Vec<u64> = values(&y).iter().map(|v| v.to_bits()).collect();
        for g in [values(&x.grad(&grads).unwrap()), values(&m.inner.weight.val().grad(&grads).unwrap())] {
            bits.extend(g.iter().map(|v| v.to_bits()));
        }
        bits.extend(m.inner.bn.running_var().iter().map(|v| v.to_bits()));
        let fq = m.inner.activation_post_process.as_ref().unwrap();
        let (o, q) = (&fq.observer, fq.qparams());
        bits.extend(o.min_val().iter().chain(o.max_val()).chain(&q.scale).map(|v| v.to_bits() as u64));
        bits.extend(q.zero_point.iter().map(|&z| z as u64));
        bits
    })
}

#[test]
fn the_thread_count_changes_no_bit() {
    let one = step_bits(1);
    assert_eq!(one, step_bits(2));
    assert_eq!(one, step_bits(3));
}

#[test]
fn the_min_max_op_matches_the_host_reduction() {
    use burn_qat::observer::{channel_min_max, tensor_min_max, tensor_values};
    let device = Device::flex().autodiff();
    for dtype in [DType::F32, DType::F64] {
        let x = Tensor::<4>::random([5, 7, 40, 130], Distribution::Normal(0.3, 2.0), (&device, dtype));
        let host = tensor_values(&x);
        for axis in [None, Some(0), Some(1), Some(3)] {
            let expected = channel_min_max(&host, &x.dims(), axis).unwrap();
            assert_eq!(tensor_min_max(&x, axis).unwrap(), expected, "{dtype:?} axis {axis:?}");
        }
    }
    let mut data = vec![1.0f32; 3 * 70_000];
    data[150_001] = f32::NAN;
    let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(data, [3, 70_000]), &device);
    assert_error!(tensor_min_max(&x, None), QatError::NonFinite { .. });
    assert_error!(tensor_min_max(&x, Some(0)), QatError::NonFinite { .. });
}

/// The output observer takes the output's min/max from the fused BN apply instead of its own
/// pass: the same module without an output fake quant, followed by a standalone copy of that
/// fake quant (which makes the pass), must give the same bits everywhere, step after step.
fn output_observer_is_bit_identical(version: u32, bias: bool, groups: usize, relu: bool, dtype: DType) {
    let device = Device::flex().autodiff();
    let options = Conv2dOptions::new(8, 8, 3).with_padding(1).with_groups(groups);
    let mut fused = ConvBn2dConfig::new(options, get_default_qat_qconfig("fbgemm", version).unwrap())
        .with_bias(bias)
        .init(&device)
        .unwrap()
        .with_output_fake_quant()
        .unwrap();
    if dtype == DType::F64 {
        to_f64(&mut fused);
    }
    assert!(fused.bn.uses_fused_kernels());
    let mut separate = fused.clone();
    let mut fq = separate.activation_post_process.take().unwrap();
    let label = format!("v{version} bias {bias} groups {groups} relu {relu} {dtype:?}");
    for step in 0..4 {
        let what = |s: &str| format!("{label} step {step} {s}");
        let x = Tensor::<4>::random([4, 8, 6, 5], Distribution::Normal(0.5, 2.0), (&device, dtype));
        let dy = Tensor::<4>::random([4, 8, 6, 5], Distribution::Normal(0.0, 1.0), (&device, dtype));
        let bits = |v: Vec<f64>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let grads_of = |x: &Tensor<4>, y: &Tensor<4>, m: &ConvBn2d| {
            let grads = (y.clone() * dy.clone()).sum().backward();
            let mut g = vec![bits(values(&x.grad(&grads).unwrap())), bits(values(&m.weight.val().grad(&grads).unwrap()))];
            g.push(bits(values(&m.bn.weight.val().grad(&grads).unwrap())));
            g.push(bits(values(&m.bn.bias.val().grad(&grads).unwrap())));
            (bits(values(y)), g)
        };
        let xf = x.clone().require_grad();
        let yf = fused.forward_with_relu(xf.clone(), relu).unwrap();
        let (of, gf) = grads_of(&xf, &yf, &fused);
        let xs = x.clone().require_grad();
        let ys = fq.forward(separate.forward_with_relu(xs.clone(), relu).unwrap()).unwrap();
        let (os, gs) = grads_of(&xs, &ys, &separate);
        assert_eq!(of, os, "{}", what("output"));
        assert_eq!(gf, gs, "{}", what("gradients"));
        let a = fused.activation_post_process.as_ref().unwrap();
        assert_eq!(a.observer.min_val(), fq.observer.min_val(), "{}", what("observer min"));
        assert_eq!(a.observer.max_val(), fq.observer.max_val(), "{}", what("observer max"));
        assert_eq!(a.qparams(), fq.qparams(), "{}", what("qparams"));
        assert_eq!(fused.bn.running_mean(), separate.bn.running_mean(), "{}", what("running mean"));
        assert_eq!(fused.bn.running_var(), separate.bn.running_var(), "{}", what("running var"));
    }
}

#[test]
fn the_output_observer_from_the_fused_apply_is_bit_identical() {
    for version in [0, 1] {
        for (bias, groups, relu, dtype) in [
            (false, 1, true, DType::F32),
            (true, 1, false, DType::F32),
            (false, 8, true, DType::F32),
            (true, 2, true, DType::F64),
            (false, 1, false, DType::F64),
        ] {
            output_observer_is_bit_identical(version, bias, groups, relu, dtype);
        }
    }
}

#[test]
fn min_max_of_signed_zeros_does_not_depend_on_the_thread_count() {
    use burn_qat::observer::tensor_min_max;
    let device = Device::flex().autodiff();
    let data: Vec<f32> = (0..300_000).map(|i| if i % 3 == 0 { -0.0 } else { 0.0 }).collect();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (lo, hi) = pool.install(|| {
            let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(data.clone(), [3, 100_000]), &device);
            tensor_min_max(&x, None).unwrap()
        });
        assert_eq!((lo[0].to_bits(), hi[0].to_bits()), ((-0.0f32).to_bits(), 0.0f32.to_bits()), "{threads} threads");
    }
}

#[test]
fn the_fused_apply_reports_the_min_max_of_its_output() {
    use burn_qat::ops::{BnApplyParams, bn_train_apply, min_max};
    let device = Device::flex().autodiff();
    for (dtype, relu) in [(DType::F32, true), (DType::F32, false), (DType::F64, false)] {
        let z = Tensor::<4>::random([3, 5, 70, 90], Distribution::Normal(0.3, 2.0), (&device, dtype)).require_grad();
        let gamma = Tensor::<1>::random([5], Distribution::Uniform(-1.0, 2.0), (&device, dtype)).require_grad();
        let beta = Tensor::<1>::random([5], Distribution::Normal(0.0, 1.0), (&device, dtype)).require_grad();
        let params = BnApplyParams {
            has_div: false,
            has_add: false,
            relu,
            mean: vec![0.1, -0.2, 0.3, 0.0, 1.0],
            invstd: vec![1.0, 2.0, 0.5, 3.0, 0.7],
        };
        let (y, observed) = BnApplyParams::observing_output(|| {
            bn_train_apply(z.clone(), gamma.clone(), beta.clone(), gamma.clone(), beta.clone(), params.clone())
        });
        let (lo, hi, finite) = min_max(&y, None);
        assert_eq!(observed, Some((lo[0], hi[0], finite)), "{dtype:?} relu {relu}");
        let (_, none) = BnApplyParams::observing_output(|| min_max(&y, None));
        assert_eq!(none, None);
    }
}
