//! `padding="same"` and `"valid"` on the 1-d, 2-d and 3-d convs against PyTorch
//! (tests/golden/same_padding.json, from tools/golden/same_padding.py): the padding each axis
//! gets and the output shape of a QAT conv, whichever order kernel, dilation and padding are
//! given in. Where PyTorch pads asymmetrically (an even kernel extent), and for strided convs,
//! which PyTorch refuses too, the options are a configuration error.

mod common;

use burn::tensor::{Device, Tensor};
use burn_qat::QatError;
use burn_qat::nn::qat::ConvConfig;
use burn_qat::nn::{Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvGeometry, Padding};
use burn_qat::qconfig::QConfig;
use common::*;
use serde_json::Value;

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

/// The options of one case, padding given before the dilation or after it.
enum Options {
    D1(Conv1dOptions),
    D2(Conv2dOptions),
    D3(Conv3dOptions),
}

fn options(case: &Value, padding_first: bool) -> Options {
    let kernel = usizes(&case["kernel"]);
    let dilation = case["dilation"].as_u64().unwrap() as usize;
    let same = case["padding"] == "same";
    macro_rules! build {
        ($options:expr, $n:literal) => {{
            let padding: Padding<$n> = if same { Padding::Same } else { Padding::Valid };
            if padding_first {
                $options.with_padding(padding).with_dilation(dilation)
            } else {
                $options.with_dilation(dilation).with_padding(padding)
            }
        }};
    }
    match kernel.len() {
        1 => Options::D1(build!(Conv1dOptions::new(2, 3, kernel[0]), 1)),
        2 => Options::D2(build!(Conv2dOptions::new(2, 3, [kernel[0], kernel[1]]), 2)),
        _ => Options::D3(build!(Conv3dOptions::new(2, 3, [kernel[0], kernel[1], kernel[2]]), 3)),
    }
}

/// The padding per axis, the options' validation, and the QAT conv's output shape.
fn run(options: Options, input: &[usize]) -> (Vec<usize>, Result<Vec<usize>, QatError>) {
    let device = Device::flex();
    let qconfig = QConfig::consistent("x86").unwrap();
    match options {
        Options::D1(o) => {
            let padding = vec![o.padding];
            let out = o
                .as_2d()
                .validate()
                .and_then(|_| ConvConfig::new(o, qconfig).init(&device))
                .and_then(|mut m| Ok(m.forward(Tensor::<3>::zeros([input[0], input[1], input[2]], &device))?.dims().to_vec()));
            (padding, out)
        }
        Options::D2(o) => {
            let padding = o.padding.to_vec();
            let out = ConvConfig::new(o, qconfig)
                .init(&device)
                .and_then(|mut m| Ok(m.forward(Tensor::<4>::zeros([input[0], input[1], input[2], input[3]], &device))?.dims().to_vec()));
            (padding, out)
        }
        Options::D3(o) => {
            let padding = o.padding.to_vec();
            let x = Tensor::<5>::zeros([input[0], input[1], input[2], input[3], input[4]], &device);
            let out = ConvConfig::new(o, qconfig).init(&device).and_then(|mut m| Ok(m.forward(x)?.dims().to_vec()));
            (padding, out)
        }
    }
}

#[test]
fn same_and_valid_padding_match_pytorch() {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(golden_path("same_padding.json")).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    let (mut symmetric, mut refused) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let pads: Vec<Vec<usize>> = case["pads"].as_array().unwrap().iter().map(usizes).collect();
        let input = usizes(&case["input"]);
        for padding_first in [true, false] {
            let (padding, out) = run(options(case, padding_first), &input);
            if case["symmetric"].as_bool().unwrap() {
                symmetric += 1;
                assert_eq!(padding, pads.iter().map(|p| p[0]).collect::<Vec<_>>(), "case {i} {case}");
                assert_eq!(out.unwrap(), usizes(&case["output"]), "case {i} {case}");
            } else {
                refused += 1;
                match out {
                    Err(QatError::InvalidConfig { field, reason }) => {
                        assert!(field == "padding" && reason.contains("asymmetric"), "case {i}: {reason}")
                    }
                    other => panic!("case {i} {case}: PyTorch pads asymmetrically here; expected a configuration error, got {other:?}"),
                }
            }
        }
    }
    assert_eq!((symmetric, refused, cases.len()), (60, 12, 36));
}

#[test]
fn same_padding_on_a_strided_conv_is_refused_as_in_pytorch() {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(golden_path("same_padding.json")).unwrap()).unwrap();
    assert_eq!(golden["strided_same_rejected"], true);
    let pytorch = golden["strided_message"].as_str().unwrap();
    let ours = Conv2dOptions::new(2, 3, 3).with_stride(2).with_padding(Padding::Same).validate().unwrap_err().to_string();
    assert!(ours.contains(&pytorch.replace('\'', "\"")), "{ours} / {pytorch}");
    let ours = Conv3dOptions::new(2, 3, 3).with_padding(Padding::Same).with_stride([1, 1, 2]).validate().unwrap_err().to_string();
    assert!(ours.contains("strided"), "{ours}");
    // Named as PyTorch spells them.
    assert_eq!(Padding::<2>::parse("same").unwrap(), Padding::Same);
    assert_eq!(Padding::<1>::parse("valid").unwrap(), Padding::Valid);
    assert!(Padding::<2>::parse("full").is_err());
}
