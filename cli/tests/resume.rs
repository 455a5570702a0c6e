//! Interrupted runs (issue 6 §3): `burn-qat train` killed mid-epoch, once in the float phase and
//! once in the QAT phase, and resumed with `--resume` each time, ends with the same bits as an
//! uninterrupted run: float, QAT and int8 model files, and the metrics. And the thread count
//! does not change a bit (issue 6 §4), so a run may resume with another `--threads`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use burn_qat::data::{default_mnist_dir, load_mnist};
use burn_qat::state_dict::load_safetensors;

/// A smaller copy of the bundled digits, so that an epoch takes about a second.
fn small_mnist(dir: &Path) {
    let (train, test) = load_mnist(&default_mnist_dir()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, images: &[u8], labels: &[u8], n: usize, pixels: usize| {
        let mut idx = vec![0, 0, 8, 3];
        for d in [n as u32, 28, 28] {
            idx.extend(d.to_be_bytes());
        }
        idx.extend(&images[..n * pixels]);
        std::fs::write(dir.join(format!("{name}-images-idx3-ubyte")), idx).unwrap();
        let mut idx = vec![0, 0, 8, 1];
        idx.extend((n as u32).to_be_bytes());
        idx.extend(&labels[..n]);
        std::fs::write(dir.join(format!("{name}-labels-idx1-ubyte")), idx).unwrap();
    };
    write("train", &train.images, &train.labels, 2400, 28 * 28);
    write("t10k", &test.images, &test.labels, 300, 28 * 28);
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("resume-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn train_command(data: &Path, out: &Path, resume: bool) -> Command {
    train_command_with_threads(data, out, resume, 2)
}

fn train_command_with_threads(data: &Path, out: &Path, resume: bool, threads: usize) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_burn-qat"));
    let data = format!("mnist:{}", data.display());
    command.args(["train", "--data", &data, "--epochs", "2", "--qat-epochs", "2", "--batch-size", "32"]);
    command.args(["--ptq-batches", "2", "--threads", &threads.to_string(), "--out", out.to_str().unwrap()]);
    if resume {
        command.arg("--resume");
    }
    command
}

/// Runs train until stdout shows a line starting with `phase` and `epoch`, lets the next epoch
/// run for a moment, then kills the process (SIGKILL: no chance to clean up).
fn kill_during_epoch_after(mut command: Command, phase: &str, epoch: usize) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        seen.push(line.clone());
        if words.len() > 2 && words[0] == phase && words[1] == epoch.to_string() {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.trim_start().starts_with(phase)), "train ended before {phase} epoch {epoch}: {seen:#?}");
    std::thread::sleep(Duration::from_millis(400));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed; give it more data");
}

fn run_to_end(mut command: Command) -> String {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "train failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn checkpoint_position(out: &Path) -> (String, String) {
    let (_, metadata) = load_safetensors(out.join("checkpoint.safetensors")).unwrap();
    (metadata["stage"].clone(), metadata["epoch"].clone())
}

fn assert_same_file(a: &Path, b: &Path, name: &str) {
    let (a, b) = (a.join(name), b.join(name));
    let (sa, ma) = load_safetensors(&a).unwrap();
    let (sb, mb) = load_safetensors(&b).unwrap();
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>(), "{name}: different keys");
    for (key, value) in &sa {
        // burn serializes optimizer state in hash-map order, so its bytes vary from process to
        // process; the momentum it holds is pinned by the weights, which equal only if the
        // resumed steps started from the same momentum.
        if key == burn_qat::train::OPTIMIZER_KEY {
            continue;
        }
        assert!(value == &sb[key], "{name}: {key} differs between the uninterrupted and the resumed run");
    }
    // A checkpoint's metadata carries the epoch reports, timings included; the rest must agree.
    let without_reports = |m: std::collections::HashMap<String, String>| {
        m.into_iter().filter(|(k, _)| !k.ends_with("reports")).collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(without_reports(ma), without_reports(mb), "{name}: different metadata");
}

#[test]
fn a_run_killed_twice_and_resumed_ends_with_the_same_bits() {
    let data = out_dir("data");
    small_mnist(&data);
    let (straight, interrupted) = (out_dir("straight"), out_dir("interrupted"));
    run_to_end(train_command(&data, &straight, false));

    kill_during_epoch_after(train_command(&data, &interrupted, false), "float", 1);
    assert_eq!(checkpoint_position(&interrupted), ("float".to_string(), "1".to_string()), "killed during the second float epoch");
    kill_during_epoch_after(train_command(&data, &interrupted, true), "QAT", 1);
    assert_eq!(checkpoint_position(&interrupted), ("qat".to_string(), "1".to_string()), "killed during the second QAT epoch");
    let stdout = run_to_end(train_command(&data, &interrupted, true));
    assert!(stdout.contains("resuming from"), "{stdout}");

    for name in ["float.safetensors", "qat.safetensors", "int8.safetensors", "ptq-int8.safetensors", "checkpoint.safetensors"] {
        assert_same_file(&straight, &interrupted, name);
    }
    let metrics =
        |dir: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap() };
    let (a, b) = (metrics(&straight), metrics(&interrupted));
    for key in ["float_accuracy", "qat_fake_quant_accuracy", "qat_integer_accuracy", "int8_accuracy", "int8_agreement", "ptq_int8_accuracy"]
    {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert_eq!(b["resumed"], true);
}

/// Learned scales are parameters with optimizer state (momentum): a run with LSQ killed in its
/// second QAT epoch and resumed ends with the same bits as one never interrupted.
#[test]
fn a_learned_quantizer_run_resumes_to_the_same_bits() {
    let data = out_dir("data-lsq");
    small_mnist(&data);
    let (straight, interrupted) = (out_dir("straight-lsq"), out_dir("interrupted-lsq"));
    let lsq = |out: &Path, resume: bool| {
        let mut command = train_command(&data, out, resume);
        command.args(["--quantizer", "lsq+", "--weight-bits", "4", "--act-bits", "4"]);
        command
    };
    run_to_end(lsq(&straight, false));
    kill_during_epoch_after(lsq(&interrupted, false), "QAT", 1);
    assert_eq!(checkpoint_position(&interrupted), ("qat".to_string(), "1".to_string()), "killed during the second QAT epoch");
    let stdout = run_to_end(lsq(&interrupted, true));
    assert!(stdout.contains("resuming from"), "{stdout}");
    for name in ["qat.safetensors", "int8.safetensors", "checkpoint.safetensors"] {
        assert_same_file(&straight, &interrupted, name);
    }
}

#[test]
fn resume_refuses_a_checkpoint_of_other_flags_and_a_missing_one() {
    let data = out_dir("flags-data");
    small_mnist(&data);
    let out = out_dir("flags");
    let missing = train_command(&data, &out, true).output().unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && stderr.contains("no checkpoint to resume from"), "{stderr}");

    kill_during_epoch_after(train_command(&data, &out, false), "float", 1);
    let mut other = train_command(&data, &out, true);
    other.args(["--lr", "0.01"]);
    let output = other.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The error names the flag that differs, on one line.
    assert!(!output.status.success() && stderr.contains("other flags") && stderr.contains("--lr was 0.05, now 0.01"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// burn's CPU kernels and ours split work by output, never a reduction by thread, so the thread
/// count does not change a bit: a run on 1 thread and one on 3 (more than the cores here) write
/// the same files. The interrupted run resumes on 1 thread and still matches.
#[test]
fn the_thread_count_changes_no_bit() {
    let data = out_dir("threads-data");
    small_mnist(&data);
    let (one, three) = (out_dir("threads-1"), out_dir("threads-3"));
    run_to_end(train_command_with_threads(&data, &one, false, 1));
    run_to_end(train_command_with_threads(&data, &three, false, 3));
    // Resuming a finished run does nothing and rewrites nothing (it rewrote metrics.json with a
    // training time of 0 s).
    let metrics = std::fs::read(one.join("metrics.json")).unwrap();
    let stdout = run_to_end(train_command_with_threads(&data, &one, true, 1));
    assert!(stdout.contains("finished") && stdout.contains("nothing to resume"), "{stdout}");
    assert!(std::fs::read(one.join("metrics.json")).unwrap() == metrics, "metrics.json was rewritten");
    for name in ["float.safetensors", "qat.safetensors", "int8.safetensors", "ptq-int8.safetensors"] {
        assert_same_file(&one, &three, name);
    }
    let resumed = out_dir("threads-resumed");
    kill_during_epoch_after(train_command_with_threads(&data, &resumed, false, 3), "float", 1);
    run_to_end(train_command_with_threads(&data, &resumed, true, 1));
    assert_same_file(&one, &resumed, "qat.safetensors");
}

/// Ctrl-C (SIGINT) during training says where the last epoch is and prints the command that
/// continues the run; that command finishes it.
#[test]
fn ctrl_c_prints_the_command_that_resumes() {
    let data = out_dir("ctrl-c-data");
    small_mnist(&data);
    let out = out_dir("ctrl-c");
    let mut child = train_command(&data, &out, false).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let words: Vec<String> = line.unwrap().split_whitespace().map(str::to_string).collect();
        if words.len() > 2 && words[0] == "float" && words[1] == "1" {
            break;
        }
    }
    // The epoch's line is printed just before its checkpoint is written: wait for the file.
    let checkpoint = out.join("checkpoint.safetensors");
    let waited = std::time::Instant::now();
    while !checkpoint.exists() && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("checkpoint.safetensors") && stderr.contains("continue with:"), "{stderr}");
    let command = stderr.lines().last().unwrap().trim();
    assert!(command.ends_with("--resume") && command.contains(out.to_str().unwrap()), "{command}");
    let mut words = command.split_whitespace();
    let resumed = Command::new(words.next().unwrap()).args(words).output().unwrap();
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success() && stdout.contains("resuming from"), "{stdout}\n{}", String::from_utf8_lossy(&resumed.stderr));
}
