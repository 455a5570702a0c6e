//! `ops::max_pool2d` (this crate's max pooling with its own backward) against burn's stock
//! `max_pool2d` on inputs without ties, and PyTorch's tie and NaN rules written out by hand.

use burn::tensor::module::max_pool2d as burn_max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_qat::ops::{MaxPoolWindow, max_pool2d};

mod common;
use common::Rng;

fn values(t: &Tensor<4>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// Distinct values (a shuffled ramp), so that every window has one maximum.
fn distinct(shape: [usize; 4], rng: &mut Rng, device: &Device, dtype: DType) -> Tensor<4> {
    let len: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..len).map(|i| i as f64 * 0.37 - len as f64 * 0.1).collect();
    for i in (1..len).rev() {
        v.swap(i, rng.int(0, i as i32) as usize);
    }
    Tensor::<4>::from_data(TensorData::new(v, shape), (device, dtype))
}

#[test]
fn forward_and_gradient_equal_burns_pooling() {
    let device = Device::flex().autodiff();
    let mut rng = Rng(77);
    for (shape, kernel, stride) in [
        ([2, 3, 8, 8], 2, 2),
        ([1, 2, 7, 9], 2, 2),
        ([2, 2, 9, 7], 3, 2),
        ([1, 1, 6, 6], 3, 1),
        ([3, 4, 5, 5], 1, 1),
        ([1, 2, 10, 11], 3, 3),
    ] {
        for dtype in [DType::F32, DType::F64] {
            let x = distinct(shape, &mut rng, &device, dtype);
            let dy_shape = {
                let out = |s: usize| (s - kernel) / stride + 1;
                [shape[0], shape[1], out(shape[2]), out(shape[3])]
            };
            let dy = Tensor::<4>::from_data(
                TensorData::new((0..dy_shape.iter().product::<usize>()).map(|_| rng.int(-50, 50) as f64 * 0.1).collect(), dy_shape),
                (&device, dtype),
            );
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = if ours {
                    max_pool2d(x.clone(), MaxPoolWindow { kernel, stride }).unwrap()
                } else {
                    burn_max_pool2d(x.clone(), MaxPoolOptions::new([kernel; 2]).with_stride([stride; 2]))
                };
                let grads = (y.clone() * dy.clone()).sum().backward();
                (values(&y), x.grad(&grads).unwrap().to_data().convert::<f64>().try_to_vec::<f64>().unwrap())
            };
            let (ours, reference) = (run(true), run(false));
            assert_eq!(ours.0, reference.0, "forward {shape:?} k{kernel} s{stride} {dtype:?}");
            assert_eq!(ours.1, reference.1, "gradient {shape:?} k{kernel} s{stride} {dtype:?}");
        }
    }
}

#[test]
fn first_maximum_takes_the_gradient_and_nan_propagates() {
    let device = Device::flex().autodiff();
    // 3x3 windows, stride 1, on a 3x4 plane: two windows, both holding NaNs (PyTorch: a NaN
    // is the maximum, the last NaN in row-major order the argmax).
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![1.0f32, 5.0, 2.0, 0.0, 5.0, 3.0, f32::NAN, 4.0, 0.0, 1.0, 2.0, f32::NAN], [1, 1, 3, 4]),
        &device,
    )
    .require_grad();
    let y = max_pool2d(x.clone(), MaxPoolWindow { kernel: 3, stride: 1 }).unwrap();
    let out = y.to_data().try_to_vec::<f32>().unwrap();
    let grads = (y * Tensor::<4>::from_data(TensorData::new(vec![10.0f32, 20.0], [1, 1, 1, 2]), &device)).sum().backward();
    let g = x.grad(&grads).unwrap().to_data().try_to_vec::<f32>().unwrap();
    // Window 1 (columns 0-2) holds the NaN at (1, 2): output NaN, gradient there.
    // Window 2 (columns 1-3) holds NaNs at (1, 2) and (2, 3): the last one takes it.
    assert!(out[0].is_nan() && out[1].is_nan(), "{out:?}");
    let mut expected = vec![0.0f32; 12];
    expected[6] = 10.0;
    expected[11] = 20.0;
    assert_eq!(g, expected);

    // Ties without NaN: the first maximum in row-major order.
    let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 5.0, 5.0, 2.0], [1, 1, 2, 2]), &device).require_grad();
    let y = max_pool2d(x.clone(), MaxPoolWindow { kernel: 2, stride: 2 }).unwrap();
    let g = x.grad(&y.sum().backward()).unwrap().to_data().try_to_vec::<f32>().unwrap();
    assert_eq!(g, vec![0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn too_small_inputs_are_errors() {
    let device = Device::flex();
    let x = Tensor::<4>::zeros([1, 1, 2, 5], &device);
    let err = max_pool2d(x, MaxPoolWindow { kernel: 3, stride: 1 }).unwrap_err().to_string();
    assert!(err.contains("max_pool2d"), "{err}");
}
