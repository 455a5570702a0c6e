//! Fake quantization against `torch.fake_quantize_per_tensor_affine` and
//! `torch.fake_quantize_per_channel_affine`: forward and gradient, bit for bit.

#[macro_use]
mod common;

use burn::tensor::{Device, Tensor};
use burn_qat::QatError;
use burn_qat::ops::{FakeQuantParams, fake_quantize};
use common::*;

fn run<const D: usize>(case: &str, params: FakeQuantParams) {
    for device in devices() {
        run_on::<D>(case, &params, &device.autodiff());
    }
}

fn run_on<const D: usize>(case: &str, params: &FakeQuantParams, device: &Device) {
    let (g, _) = load_golden("fake_quant.safetensors");
    let device = device.clone();
    let x: Tensor<D> = tensor::<D>(&g, &format!("{case}.x"), &device).require_grad();
    let dy: Tensor<D> = tensor(&g, &format!("{case}.dy"), &device);
    let y = fake_quantize(x.clone(), params).unwrap();
    assert_bits_eq(&format!("{case} forward on {device:?}"), &to_vec(&y), &f32s(&g, &format!("{case}.y")));
    let grads = (y * dy).sum().backward();
    let dx = x.grad(&grads).expect("x has a gradient");
    assert_bits_eq(&format!("{case} gradient on {device:?}"), &to_vec(&dx), &f32s(&g, &format!("{case}.dx")));
}

fn params(case: &str) -> FakeQuantParams {
    let (g, _) = load_golden("fake_quant.safetensors");
    let range = ints(&g, &format!("{case}.range"));
    let scale = f32s(&g, &format!("{case}.scale"));
    let zero_point: Vec<i32> = ints(&g, &format!("{case}.zero_point")).iter().map(|&z| z as i32).collect();
    let axis = g.get(&format!("{case}.axis")).map(|_| ints(&g, &format!("{case}.axis"))[0] as usize);
    match axis {
        None => FakeQuantParams::per_tensor(scale[0], zero_point[0], range[0] as i32, range[1] as i32),
        Some(axis) => FakeQuantParams::per_channel(scale, zero_point, axis, range[0] as i32, range[1] as i32),
    }
}

#[test]
fn per_tensor_matches_pytorch_bit_for_bit() {
    for i in 0..=8 {
        let case = format!("pt{i}");
        run::<1>(&case, params(&case));
    }
}

#[test]
fn per_channel_matches_pytorch_bit_for_bit() {
    for i in 0..=2 {
        let case = format!("pc{i}");
        run::<4>(&case, params(&case));
    }
}

#[test]
fn the_spec_vectors() {
    for device in devices() {
        spec_vectors(&device.autodiff());
    }
}

fn spec_vectors(device: &Device) {
    let device = device.clone();
    let x = Tensor::<1>::from_floats([14.549999237f32], &device);
    let y = fake_quantize(x, &FakeQuantParams::per_tensor(0.1, 0, -32768, 32767)).unwrap();
    assert_eq!(to_vec(&y), vec![14.6f32]);

    let x = Tensor::<1>::from_floats([0.5f32, 1.5, 2.5, 127.5], &device).require_grad();
    let y = fake_quantize(x.clone(), &FakeQuantParams::per_tensor(1.0, 0, -128, 127)).unwrap();
    assert_eq!(to_vec(&y), vec![0.0, 2.0, 2.0, 127.0]);
    let dx = x.grad(&y.sum().backward()).unwrap();
    assert_eq!(to_vec(&dx), vec![1.0, 1.0, 1.0, 0.0], "127.5 rounds to 128, out of range: no gradient");
}

#[test]
fn bad_parameters_are_errors_not_panics() {
    let device = Device::flex();
    let x = Tensor::<2>::zeros([2, 3], &device);
    let bad = [
        FakeQuantParams::per_tensor(0.0, 0, -128, 127),
        FakeQuantParams::per_tensor(f32::NAN, 0, -128, 127),
        FakeQuantParams::per_tensor(0.1, 200, -128, 127),
        FakeQuantParams::per_tensor(0.1, 0, 127, -128),
        FakeQuantParams::per_channel(vec![0.1; 2], vec![0; 2], 1, -128, 127),
        FakeQuantParams::per_channel(vec![0.1; 3], vec![0; 3], 2, -128, 127),
    ];
    for p in bad {
        assert_error!(
            fake_quantize(x.clone(), &p),
            QatError::InvalidConfig { .. } | QatError::InvalidRange { .. } | QatError::ShapeMismatch { .. },
            "{p:?} should be rejected"
        );
    }
}
