//! Distillation (src/train/distill.rs): the loss against values computed here in f64 by the
//! textbook formulas, its gradient against the closed form, and the CLI's `--distill`.

#[macro_use]
mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_qat::train::Distillation;
use common::*;

fn logits(values: &[f32], n: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [n, values.len() / n]), device)
}

fn softmax(row: &[f64], t: f64) -> Vec<f64> {
    let e: Vec<f64> = row.iter().map(|v| (v / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

const TEACHER: [f32; 6] = [2.0, 0.5, -1.0, 0.1, 0.2, 3.0];
const STUDENT: [f32; 6] = [1.0, 1.5, -0.5, 0.0, 1.0, 2.0];
const LABELS: [i64; 2] = [0, 2];

#[test]
fn the_loss_is_cross_entropy_plus_t_squared_kl() {
    let device = Device::flex();
    for t in [1.0, 2.0, 4.0] {
        // Examples 1 and 0 of the teacher's two rows: the batch picks rows by index.
        let d = Distillation::from_logits(TEACHER.to_vec(), 3, t).unwrap();
        let batch = [1usize, 0];
        let student: Vec<f32> = [&STUDENT[..3], &STUDENT[3..]].concat();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(LABELS.to_vec(), [2]), &device);
        let (loss, _) = d.loss(logits(&student, 2, &device), labels, &batch).unwrap();
        let mut expected = 0.0;
        for (row, &example) in batch.iter().enumerate() {
            let s: Vec<f64> = student[row * 3..row * 3 + 3].iter().map(|&v| v as f64).collect();
            let teacher: Vec<f64> = TEACHER[example * 3..example * 3 + 3].iter().map(|&v| v as f64).collect();
            let ce = -softmax(&s, 1.0)[LABELS[row] as usize].ln();
            let (p, q) = (softmax(&teacher, t), softmax(&s, t));
            let kl: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
            expected += (ce + t * t * kl) / 2.0;
        }
        let got = loss.into_scalar::<f32>() as f64;
        assert!((got - expected).abs() < 1e-5 * expected, "T = {t}: {got} vs {expected}");
    }
}

#[test]
fn a_student_equal_to_its_teacher_pays_only_cross_entropy() {
    let device = Device::flex();
    let d = Distillation::from_logits(TEACHER.to_vec(), 3, 3.0).unwrap();
    let labels = || Tensor::<1, Int>::from_data(TensorData::new(LABELS.to_vec(), [2]), &device);
    let (with, _) = d.loss(logits(&TEACHER, 2, &device), labels(), &[0, 1]).unwrap();
    let ce: f64 = (0..2)
        .map(|r| -softmax(&TEACHER[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect::<Vec<_>>(), 1.0)[LABELS[r] as usize].ln())
        .sum::<f64>()
        / 2.0;
    assert!((with.into_scalar::<f32>() as f64 - ce).abs() < 1e-6, "KL of equal distributions is 0");
}

#[test]
fn the_gradient_is_the_closed_form() {
    // d/ds of T^2 KL(p_t || softmax(s / T)) = T (softmax(s / T) - p_t), per example, / batch.
    let device = Device::flex().autodiff();
    let t = 2.0;
    let d = Distillation::from_logits(TEACHER.to_vec(), 3, t).unwrap();
    let student = logits(&STUDENT, 2, &device).require_grad();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(LABELS.to_vec(), [2]), &device);
    let (loss, _) = d.loss(student.clone(), labels, &[0, 1]).unwrap();
    let grad = to_vec(&student.grad(&loss.backward()).unwrap());
    for r in 0..2 {
        let s: Vec<f64> = STUDENT[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect();
        let teacher: Vec<f64> = TEACHER[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect();
        let (p, q, ce) = (softmax(&teacher, t), softmax(&s, t), softmax(&s, 1.0));
        for c in 0..3 {
            let onehot = if c == LABELS[r] as usize { 1.0 } else { 0.0 };
            let expected = ((ce[c] - onehot) + t * (q[c] - p[c])) / 2.0;
            assert!((grad[r * 3 + c] as f64 - expected).abs() < 1e-5, "row {r} class {c}: {} vs {expected}", grad[r * 3 + c]);
        }
    }
}

#[test]
fn bad_teachers_and_temperatures_are_errors() {
    assert!(Distillation::from_logits(TEACHER.to_vec(), 3, 0.0).is_err());
    assert!(Distillation::from_logits(TEACHER.to_vec(), 3, f64::NAN).is_err());
    assert!(Distillation::from_logits(TEACHER.to_vec(), 4, 1.0).is_err(), "6 values are not rows of 4");
    assert!(Distillation::from_logits(vec![1.0, f32::NAN, 0.0], 3, 1.0).is_err());
    let device = Device::flex();
    let d = Distillation::from_logits(TEACHER.to_vec(), 3, 1.0).unwrap();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 0], [2]), &device);
    assert!(d.loss(logits(&STUDENT, 2, &device), labels, &[0, 5]).is_err(), "example 5 is beyond the teacher's 2");
}
