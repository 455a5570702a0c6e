//! A run's files read and written through the library alone (`burn_qat::run`), without the
//! command: the keys are checked as literal strings (the schema the README and older files
//! use), the model files load back into the model they were saved from, and a checkpoint's
//! position survives the round trip. Bad metadata is a file error naming what is missing.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::qconfig::Quantizer;
use burn_qat::run::{Checkpoint, CheckpointPosition, ModelKind, ObserverChoice, RunRecord, RunSpec, SavedModel, Stage};
use burn_qat::state_dict::{SaveStateDict, load_safetensors, save_safetensors};
use burn_qat::train::{EpochReport, ResumePoint};

fn out(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run-files");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An older run's spec, as its JSON was written before learned quantizers and observers.
const OLD_RUN_JSON: &str = r#"{"model":"lenet","input":[1,28,28],"classes":10,"normalization":"pixel / 255, no mean or std","qconfig":"fbgemm","qconfig_version":null,"weight_bits":4,"act_bits":null,"per_tensor":false,"per_channel":false,"layer_bits":null,"keep_first_last_8bit":false}"#;

fn record() -> RunRecord {
    let metadata = HashMap::from([("burn_qat_run".to_string(), OLD_RUN_JSON.to_string())]);
    let spec = RunSpec::from_metadata(&metadata, &out("old")).unwrap();
    RunRecord { spec, training: serde_json::json!({"data": "mnist:somewhere", "epochs": 3}), qconfig: "w4".into() }
}

fn report(epoch: usize, accuracy: f64) -> EpochReport {
    EpochReport { epoch, loss: 0.5 / (epoch + 1) as f64, train_accuracy: accuracy, test_accuracy: accuracy - 0.01, samples_per_second: 0.0 }
}

#[test]
fn an_older_runs_spec_reads_with_the_defaults_of_its_time() {
    let spec = record().spec;
    assert_eq!(spec.model, ModelKind::Lenet);
    assert_eq!((spec.input.channels, spec.input.height, spec.input.width, spec.input.classes), (1, 28, 28, 10));
    assert_eq!(spec.qconfig.backend, "fbgemm");
    assert_eq!((spec.qconfig.weight_bits, spec.qconfig.act_bits), (Some(4), None));
    assert_eq!((spec.qconfig.quantizer, spec.qconfig.weight_quantizer), (Quantizer::Fixed, None));
    assert_eq!(spec.qconfig.observer, ObserverChoice::MIN_MAX);
    // And the spec writes itself back to JSON that reads as the same spec.
    let again = RunSpec::from_metadata(&HashMap::from([("burn_qat_run".into(), spec.to_json())]), &out("again")).unwrap();
    assert_eq!(again, spec);
}

#[test]
fn model_files_carry_the_run_and_load_back_as_what_was_saved() {
    let device = Device::flex();
    let record = record();
    let float = record.spec.float_model(&device).unwrap();
    let path = out("float.safetensors");
    record.save_model(&path, &float.state_dict(), Stage::Float).unwrap();

    let (state, metadata) = load_safetensors(&path).unwrap();
    assert_eq!(metadata["stage"], "float");
    assert_eq!(metadata["format"], "burn-qat checkpoint");
    assert_eq!(metadata["qconfig"], "w4");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&metadata["training"]).unwrap()["data"], "mnist:somewhere");
    assert_eq!(state, float.state_dict());
    assert_eq!(burn_qat::run::trained_data(&path).unwrap().to_string(), "mnist:somewhere");
    let provenance = burn_qat::run::provenance(&path).unwrap();
    assert_eq!(provenance.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(), ["burn_qat_run", "training"].into());

    match SavedModel::load(&path, &device).unwrap() {
        SavedModel::Float(model, spec) => {
            assert_eq!(model.state_dict(), float.state_dict());
            assert_eq!(spec, record.spec);
        }
        _ => panic!("a float file loads as a float model"),
    }

    // The QAT stage: the same file kind, rebuilt through the run's qconfig (w4 here).
    let qat = record.spec.prepare(float).unwrap();
    let qat_path = out("qat.safetensors");
    record.save_model(&qat_path, &qat.state_dict(), Stage::Qat).unwrap();
    match SavedModel::load(&qat_path, &device).unwrap() {
        SavedModel::Qat(model, _) => assert_eq!(model.state_dict(), qat.state_dict()),
        _ => panic!("a QAT file loads as a QAT model"),
    }
}

#[test]
fn a_checkpoint_keeps_its_position_and_optimizer_state() {
    let device = Device::flex();
    let record = record();
    let qat = record.spec.prepare(record.spec.float_model(&device).unwrap()).unwrap();
    let point =
        ResumePoint { epochs_done: 2, optimizer: vec![7, 0, 255, 1], optimizer_tensors: 9, reports: vec![report(0, 0.9), report(1, 0.95)] };
    let float_reports = [report(0, 0.8), report(1, 0.85), report(2, 0.875)];
    let path = out("checkpoint.safetensors");
    let position = CheckpointPosition { stage: Stage::Qat, epochs: 3, float_reports: &float_reports };
    Checkpoint::save(&path, qat.state_dict(), &point, position, &record.metadata()).unwrap();

    let (raw, metadata) = load_safetensors(&path).unwrap();
    assert_eq!((metadata["stage"].as_str(), metadata["epoch"].as_str(), metadata["epochs"].as_str()), ("qat", "2", "3"));
    assert_eq!(metadata["optimizer_tensors"], "9");
    assert!(raw.contains_key("__optimizer__"));

    let checkpoint = Checkpoint::load(&path).unwrap();
    assert_eq!((checkpoint.stage, checkpoint.epochs), (Stage::Qat, 3));
    assert_eq!(checkpoint.point, point);
    assert_eq!(checkpoint.float_reports, float_reports);
    assert_eq!(checkpoint.state, qat.state_dict(), "the model's keys, without the optimizer state");
    assert_eq!(checkpoint.spec(&path).unwrap(), record.spec);
    // A checkpoint is a model file too: it loads as its stage's model.
    assert!(matches!(SavedModel::load(&path, &device).unwrap(), SavedModel::Qat(..)));
}

#[test]
fn missing_or_wrong_metadata_is_a_file_error_that_says_what() {
    let device = Device::flex();
    let record = record();
    let float = record.spec.float_model(&device).unwrap();
    let point = ResumePoint { epochs_done: 1, optimizer: vec![1], optimizer_tensors: 1, reports: vec![report(0, 0.5)] };
    let path = out("broken-checkpoint.safetensors");
    let position = CheckpointPosition { stage: Stage::Float, epochs: 2, float_reports: &[] };
    Checkpoint::save(&path, float.state_dict(), &point, position, &record.metadata()).unwrap();
    let (state, metadata) = load_safetensors(&path).unwrap();

    let rewrite = |change: &dyn Fn(&mut HashMap<String, String>)| {
        let mut m = metadata.clone();
        change(&mut m);
        save_safetensors(&path, &state, &m).unwrap();
    };
    let file_error = |result: Result<Checkpoint, QatError>| match result {
        Err(QatError::File { reason, .. }) => reason,
        Err(other) => panic!("expected a file error, got {other}"),
        Ok(_) => panic!("expected a file error, got a checkpoint"),
    };
    rewrite(&|m| {
        m.remove("epoch");
    });
    assert!(file_error(Checkpoint::load(&path)).contains("no epoch metadata"));
    rewrite(&|m| {
        m.insert("epochs".into(), "two".into());
    });
    assert!(file_error(Checkpoint::load(&path)).contains("metadata epochs"));
    rewrite(&|m| {
        m.insert("stage".into(), "int4".into());
    });
    assert!(file_error(Checkpoint::load(&path)).contains("expected \"float\" or \"qat\""));
    rewrite(&|m| {
        m.insert("burn_qat_run".into(), r#"{"model":"vgg"}"#.into());
    });
    let err = SavedModel::load(&path, &device).err().expect("an unknown model is refused").to_string();
    assert!(err.contains("unknown model"), "{err}");
}
