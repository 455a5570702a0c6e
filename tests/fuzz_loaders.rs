//! Property tests with a fixed budget for everything that reads bytes from disk: IDX images and
//! labels (plain and gzipped), CIFAR-10 batch files and folders, PyTorch-layout state dicts and
//! int8 model files. Truncated, bit-flipped or random files must give an `Err`, never a panic,
//! and never a partial load.

#[macro_use]
mod common;

use std::path::PathBuf;

use burn_qat::QatError;
use burn_qat::data::{
    CIFAR10_RECORD_BYTES, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, Dataset, load_cifar10, read_cifar10_batch, read_idx_images,
    read_idx_labels,
};
use burn_qat::state_dict::load_safetensors;
use burn_qat::workflow::Int8Model;
use proptest::prelude::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burn-qat-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend((0..n * rows * cols).map(|i| (i * 37 % 256) as u8));
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Applies a mutation: truncate, flip bits, or overwrite a header byte.
fn mutate(mut bytes: Vec<u8>, kind: u8, at: usize, value: u8) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    let at = at % bytes.len();
    match kind % 3 {
        0 => bytes.truncate(at),
        1 => bytes[at] ^= value | 1,
        _ => {
            let header = 16.min(bytes.len());
            bytes[at % header] = value;
        }
    }
    bytes
}

/// `n` valid CIFAR-10 records: label `i % 10`, pixels a simple pattern.
fn cifar_records(n: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n * CIFAR10_RECORD_BYTES);
    for i in 0..n {
        bytes.push((i % 10) as u8);
        bytes.extend((0..CIFAR10_RECORD_BYTES - 1).map(|p| ((p + i * 13) % 256) as u8));
    }
    bytes
}

/// A CIFAR-specific mutation: truncate, flip bits anywhere, or overwrite the label byte of a
/// record (the only bytes whose value the loader checks).
fn mutate_cifar(mut bytes: Vec<u8>, kind: u8, at: usize, value: u8) -> Vec<u8> {
    match kind % 3 {
        0 => bytes.truncate(at % (bytes.len() + 1)),
        1 => {
            let at = at % bytes.len();
            bytes[at] ^= value | 1;
        }
        _ => {
            let record = at % (bytes.len() / CIFAR10_RECORD_BYTES);
            bytes[record * CIFAR10_RECORD_BYTES] = value;
        }
    }
    bytes
}

/// What a successful CIFAR load must look like: whole 3x32x32 images, one valid label each.
fn check_cifar(set: &Dataset, records: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(set.image_shape(), [3, 32, 32]);
    prop_assert_eq!(set.len(), records);
    prop_assert_eq!(set.images.len(), records * set.image_len());
    prop_assert!(set.labels.iter().all(|&l| l < 10));
    Ok(())
}

/// A failed CIFAR load must be a typed file error that names the file (or folder) it is about.
fn check_cifar_error(err: &QatError, name: &str) -> Result<(), TestCaseError> {
    prop_assert!(matches!(err, QatError::File { .. }), "{:?}", err);
    prop_assert!(err.to_string().contains(name), "{}", err);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn idx_readers_never_panic(kind in 0u8..3, at in 0usize..4096, value in any::<u8>(), gz in any::<bool>()) {
        let clean = idx_images(3, 5, 4);
        let bytes = mutate(clean, kind, at, value);
        let bytes = if gz { gzip(&bytes) } else { bytes };
        let path = scratch(&format!("idx-{kind}-{at}-{value}-{gz}"));
        std::fs::write(&path, &bytes).unwrap();
        // Either a clean error or a well-formed result; a panic fails the property.
        if let Ok((pixels, n, rows, cols)) = read_idx_images(&path) {
            prop_assert_eq!(pixels.len(), n * rows * cols);
        }
        let _ = read_idx_labels(&path);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn random_bytes_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let path = scratch(&format!("random-{}", bytes.len()));
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_idx_images(&path);
        let _ = read_idx_labels(&path);
        let _ = load_safetensors(&path);
        let refused = matches!(Int8Model::load(&path), Err(QatError::File { .. }));
        prop_assert!(refused, "random bytes are not an int8 model file");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn damaged_state_dict_files_never_panic(kind in 0u8..3, at in 0usize..2048, value in any::<u8>()) {
        let clean = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/modules/torch_saved_state.safetensors")).unwrap();
        let path = scratch(&format!("state-{kind}-{at}-{value}"));
        std::fs::write(&path, mutate(clean, kind, at, value)).unwrap();
        let _ = load_safetensors(&path);
        let refused = matches!(Int8Model::load(&path), Err(QatError::File { .. }));
        prop_assert!(refused, "a PyTorch state dict is not an int8 model");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn damaged_cifar_folders_never_panic(file in 0usize..6, kind in 0u8..3, at in 0usize..8192, value in any::<u8>()) {
        let dir = scratch(&format!("cifar-{file}-{kind}-{at}-{value}"));
        std::fs::create_dir_all(&dir).unwrap();
        let names: Vec<&str> = CIFAR10_TRAIN_FILES.iter().copied().chain([CIFAR10_TEST_FILE]).collect();
        let mut sizes = [0usize; 6];
        for (i, name) in names.iter().enumerate() {
            let clean = cifar_records(1 + i % 2);
            let bytes = if i == file { mutate_cifar(clean, kind, at, value) } else { clean };
            sizes[i] = bytes.len();
            std::fs::write(dir.join(name), &bytes).unwrap();
        }
        match load_cifar10(&dir) {
            Ok((train, test)) => {
                let records = |s: &[usize]| s.iter().map(|n| n / CIFAR10_RECORD_BYTES).sum::<usize>();
                check_cifar(&train, records(&sizes[..5]))?;
                check_cifar(&test, records(&sizes[5..]))?;
            }
            Err(err) => check_cifar_error(&err, names[file])?,
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn random_cifar_batches_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..8192), whole in any::<bool>()) {
        // Half the cases cut to whole records, so the label checks see random labels too.
        let mut bytes = bytes;
        if whole {
            bytes.truncate(bytes.len() / CIFAR10_RECORD_BYTES * CIFAR10_RECORD_BYTES);
        }
        let name = format!("cifar-random-{}-{whole}", bytes.len());
        let path = scratch(&name);
        std::fs::write(&path, &bytes).unwrap();
        match read_cifar10_batch(&path) {
            Ok(set) => check_cifar(&set, bytes.len() / CIFAR10_RECORD_BYTES)?,
            Err(err) => check_cifar_error(&err, &name)?,
        }
        std::fs::remove_file(&path).unwrap();
    }
}
