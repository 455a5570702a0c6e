//! `burn-qat train --device wgpu` (feature `wgpu`; in CI the software Vulkan device lavapipe):
//! the whole job on the GPU path, its int8 model agreeing with its QAT eval on every test image.
//! The ops and modules on the device are tested in the library's tests/gpu.rs.
#![cfg(feature = "wgpu")]

#[test]
fn train_on_wgpu_gives_an_int8_model_that_agrees_with_its_qat_eval_on_every_test_image() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpu-train");
    let _ = std::fs::remove_dir_all(&out);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_burn-qat"))
        .args(["train", "--device", "wgpu", "--epochs", "1", "--qat-epochs", "1", "--out", out.to_str().unwrap()])
        .output()
        .expect("the burn-qat binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(output.status.success(), "train --device wgpu failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["device"], "wgpu");
    let agreement = &metrics["int8_agreement"]["with_qat_integer"];
    assert_eq!(agreement["argmax"], 1.0, "{metrics}");
    assert_eq!(agreement["logits_equal"], 1.0, "{metrics}");
    // One float and one QAT epoch on the 8,000 training digits (on the CPU: 96.55%).
    let accuracy = metrics["int8_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.95, "int8 accuracy {accuracy} after training on wgpu");
}
