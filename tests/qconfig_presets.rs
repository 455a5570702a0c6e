//! The qconfig presets against PyTorch's table (spec §5, verified on torch 2.15).

#[macro_use]
mod common;

use burn_qat::QatError;
use burn_qat::fake_quantize::FakeQuantizeVariant;
use burn_qat::observer::Averaging;
use burn_qat::qconfig::{QConfig, QConfigBuilder, get_default_qat_qconfig};
use burn_qat::quant::{QParamFormula, QScheme, QuantDtype};

#[test]
fn get_default_qat_qconfig_reproduces_pytorchs_table() {
    for backend in ["fbgemm", "x86", "qnnpack", "onednn"] {
        for version in [0, 1] {
            let q = get_default_qat_qconfig(backend, version).unwrap();
            let act = q.activation.observer.spec().unwrap();
            let wt = q.weight.observer.spec().unwrap();
            let act_max = if matches!(backend, "fbgemm" | "x86") { 127 } else { 255 };
            assert_eq!(
                (act.dtype, act.qscheme, act.range.quant_min, act.range.quant_max),
                (QuantDtype::QUInt8, QScheme::PerTensorAffine, 0, act_max),
                "{backend} v{version} activation"
            );
            let wt_scheme = if backend == "qnnpack" { QScheme::PerTensorSymmetric } else { QScheme::PerChannelSymmetric };
            assert_eq!(
                (wt.dtype, wt.qscheme, wt.range.quant_min, wt.range.quant_max),
                (QuantDtype::QInt8, wt_scheme, -128, 127),
                "{backend} v{version} weight"
            );
            assert_eq!(q.weight.observer.ch_axis, 0);
            for fq in [&q.activation, &q.weight] {
                // Not memoryless: c = 0.01 everywhere, weights included (PyTorch issue #170169).
                assert_eq!(fq.observer.averaging, Averaging::MovingAverage { averaging_constant: 0.01 });
                match version {
                    0 => assert_eq!(
                        (fq.variant, fq.train_qparams, fq.convert_qparams),
                        (FakeQuantizeVariant::Standard, QParamFormula::Observer, QParamFormula::Observer)
                    ),
                    _ => assert_eq!(
                        (fq.variant, fq.train_qparams, fq.convert_qparams),
                        (
                            FakeQuantizeVariant::FusedMovingAverage { averaging_constant: 0.01 },
                            QParamFormula::ChooseQParams,
                            QParamFormula::Observer
                        )
                    ),
                }
            }
        }
    }
}

#[test]
fn our_preset_uses_one_formula() {
    let q = QConfig::consistent("x86").unwrap();
    assert!(q.is_consistent());
    assert!(!get_default_qat_qconfig("x86", 1).unwrap().is_consistent());
    assert!(get_default_qat_qconfig("x86", 0).unwrap().is_consistent());
}

#[test]
fn the_builder_makes_low_bit_configs_and_rejects_impossible_ones() {
    let q = QConfigBuilder::new().weight_bits(4).activation_bits(4).build().unwrap();
    assert_eq!(q.weight.observer.quant_range, Some((-8, 7)));
    assert_eq!(q.activation.observer.quant_range, Some((0, 15)));
    let q16 = QConfigBuilder::new().weight_bits(16).build().unwrap();
    assert_eq!(q16.weight.observer.dtype, QuantDtype::QInt32);
    assert_error!(QConfigBuilder::new().weight_bits(1).build(), QatError::InvalidConfig { field, reason } if field == "weight_bits" && reason.contains("bits"));
    assert_error!(QConfigBuilder::new().activation_bits(17).build(), QatError::InvalidConfig { field, reason } if field == "activation_bits" && reason.contains("bits"));
    assert_error!(QConfigBuilder::new().averaging_constant(0.0).build(), QatError::InvalidConfig { field, .. } if field == "averaging_constant");
}

/// The presets take the backend as the enum or as PyTorch's name, to the same qconfig.
#[test]
fn presets_take_the_backend_enum_or_its_name() {
    use burn_qat::qconfig::QuantBackend;
    for backend in [QuantBackend::Fbgemm, QuantBackend::X86, QuantBackend::Qnnpack, QuantBackend::Onednn] {
        for version in [0, 1] {
            assert_eq!(get_default_qat_qconfig(backend, version).unwrap(), get_default_qat_qconfig(backend.name(), version).unwrap());
        }
        assert_eq!(QConfig::consistent(backend).unwrap(), QConfig::consistent(backend.name().to_string()).unwrap());
    }
    assert_error!(QConfig::consistent("tpu"), QatError::InvalidConfig { field, reason } if field == "backend" && reason.contains("tpu"));
}

/// `FakeQuantizeConfig::consistent` is what `QConfig::consistent` applies to PyTorch's version-1
/// preset: the observer formula for training and convert.
#[test]
fn one_meaning_of_consistent() {
    for backend in ["fbgemm", "qnnpack"] {
        let pytorch = get_default_qat_qconfig(backend, 1).unwrap();
        assert_eq!(pytorch.activation.train_qparams, QParamFormula::ChooseQParams);
        let ours = QConfig::consistent(backend).unwrap();
        assert_eq!(ours.activation, pytorch.activation.consistent());
        assert_eq!(ours.weight, pytorch.weight.consistent());
        assert_eq!((ours.weight.train_qparams, ours.weight.convert_qparams), (QParamFormula::Observer, QParamFormula::Observer));
    }
}
