//! The README's claims about the command line, checked against it: its two set-up commands
//! come first, every `burn-qat` subcommand and every flag it names exists, and the Rust
//! version it asks for is the one Cargo.toml declares.

use std::collections::BTreeSet;
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_burn-qat")).args(args).arg("--help").output().unwrap();
    assert!(output.status.success(), "burn-qat {args:?} --help failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_readme_starts_with_the_main_job_and_the_tests() {
    let readme = readme();
    let block: Vec<&str> = readme.split("```").nth(1).unwrap().lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
    assert!(block[0].starts_with("cargo run --release -- train "), "{block:?}");
    assert!(block[1].starts_with("cargo test --release "), "{block:?}");
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == "cargo test --release"), ".ci/run runs the README's test command");
}

#[test]
fn every_subcommand_and_flag_the_readme_names_exists() {
    let readme = readme();
    let subcommands = ["train", "eval", "convert", "inspect", "export", "bench"];
    let helps: String = subcommands.iter().map(|s| help(&[s])).collect();
    for line in readme.lines().filter(|l| l.trim_start().starts_with("burn-qat ")) {
        let sub = line.split_whitespace().nth(1).unwrap();
        assert!(subcommands.contains(&sub), "README names a subcommand burn-qat lacks: {line}");
    }
    // Every `--flag` in the README's text (cargo's own excepted) is in some subcommand's help.
    let cargo_flags = ["--release", "--path", "--resume", "--ignored", "--nocapture", "--test", "--help", "--features"];
    let flags: BTreeSet<String> = readme
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && w.as_bytes()[2].is_ascii_lowercase())
        .map(str::to_string)
        .collect();
    assert!(flags.len() > 10, "{flags:?}");
    for flag in flags {
        let known = helps.contains(&format!("{flag} ")) || helps.contains(&format!("{flag}\n")) || helps.contains(&format!("{flag}="));
        assert!(known || cargo_flags.contains(&flag.as_str()), "the README names {flag}, which no subcommand takes");
    }
    assert!(help(&["train"]).contains("--resume"));
}

#[test]
fn the_readme_asks_for_the_rust_version_cargo_toml_declares() {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
    let version = toml.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"');
    assert!(readme().contains(&format!("Rust {version} or newer")), "README should name Rust {version}");
    assert!(readme().contains("cargo install --path cli"), "README says how to install the binary");
}
