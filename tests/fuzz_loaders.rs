//! Property tests with a fixed budget for everything that reads bytes from disk: IDX images and
//! labels (plain and gzipped), PyTorch-layout state dicts and int8 model files. Truncated,
//! bit-flipped or random files must give an `Err`, never a panic, and never a partial load.

use std::path::PathBuf;

use burn_qat::data::{read_idx_images, read_idx_labels};
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
        prop_assert!(Int8Model::load(&path).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn damaged_state_dict_files_never_panic(kind in 0u8..3, at in 0usize..2048, value in any::<u8>()) {
        let clean = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/modules/torch_saved_state.safetensors")).unwrap();
        let path = scratch(&format!("state-{kind}-{at}-{value}"));
        std::fs::write(&path, mutate(clean, kind, at, value)).unwrap();
        let _ = load_safetensors(&path);
        prop_assert!(Int8Model::load(&path).is_err(), "a PyTorch state dict is not an int8 model");
        std::fs::remove_file(&path).unwrap();
    }
}
