//! The CIFAR-10 binary loader on small synthetic files, and the `--data` source spec.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::data::{
    CIFAR10_RECORD_BYTES, CIFAR10_SUBDIR, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, DataSource, default_mnist_dir, load_cifar10, load_mnist,
    read_cifar10_batch,
};

/// A fresh folder under the system temp dir, removed when dropped (also when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("burn-qat-cifar-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The synthetic pixel of image `id`, channel `c`, row `y`, column `x`: distinct enough that a
/// swapped plane, row or image shows up as a wrong value.
fn pixel(id: usize, c: usize, y: usize, x: usize) -> u8 {
    ((id * 31 + c * 85 + y * 7 + x) % 256) as u8
}

/// Records for images `first..first + n`, labelled `id % 10`, laid out as in the real files.
fn records(first: usize, n: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n * CIFAR10_RECORD_BYTES);
    for id in first..first + n {
        bytes.push((id % 10) as u8);
        for c in 0..3 {
            for y in 0..32 {
                bytes.extend((0..32).map(|x| pixel(id, c, y, x)));
            }
        }
    }
    bytes
}

/// Writes a CIFAR-10 folder in `dir`: train files of 2, 1, 1, 1, 1 images (ids 0..6) and a test
/// file of 3 (ids 100..103).
fn write_cifar(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut id = 0;
    for (name, n) in CIFAR10_TRAIN_FILES.iter().zip([2, 1, 1, 1, 1]) {
        std::fs::write(dir.join(name), records(id, n)).unwrap();
        id += n;
    }
    std::fs::write(dir.join(CIFAR10_TEST_FILE), records(100, 3)).unwrap();
}

/// The message of a `File` error, which must name `what` (a file or folder name).
fn file_error<T: std::fmt::Debug>(result: Result<T, QatError>, what: &str) -> String {
    let err = result.unwrap_err();
    assert!(matches!(err, QatError::File { .. }), "not a File error: {err:?}");
    let msg = err.to_string();
    assert!(msg.contains(what), "the message should name {what}: {msg}");
    msg
}

#[test]
fn loads_a_synthetic_folder_in_file_order_and_chw_layout() {
    let dir = TempDir::new("load");
    write_cifar(&dir.0);
    let (train, test) = load_cifar10(&dir.0).unwrap();
    for (set, n, first) in [(&train, 6, 0), (&test, 3, 100)] {
        assert_eq!((set.len(), set.channels, set.rows, set.cols, set.classes), (n, 3, 32, 32, 10));
        assert_eq!(set.image_shape(), [3, 32, 32]);
        assert_eq!(set.images.len(), n * 3072);
        assert_eq!(set.labels, (first..first + n).map(|id| (id % 10) as u8).collect::<Vec<_>>());
        for i in 0..n {
            for (c, y, x) in [(0, 0, 0), (0, 0, 31), (0, 1, 0), (1, 0, 0), (2, 31, 31), (1, 17, 5)] {
                assert_eq!(set.images[i * 3072 + c * 1024 + y * 32 + x], pixel(first + i, c, y, x), "image {i} c{c} y{y} x{x}");
            }
        }
    }
}

#[test]
fn batches_are_n_3_32_32_with_the_planes_in_rgb_order() {
    let dir = TempDir::new("batch");
    write_cifar(&dir.0);
    // One extra test image whose red, green and blue planes are flat 51, 102 and 255.
    let mut test = records(100, 1);
    test.push(4);
    for value in [51u8, 102, 255] {
        test.extend(std::iter::repeat_n(value, 1024));
    }
    std::fs::write(dir.0.join(CIFAR10_TEST_FILE), test).unwrap();

    let (train, test) = load_cifar10(&dir.0).unwrap();
    let (images, labels) = test.batch(&[1, 0], &Device::flex());
    assert_eq!(images.dims(), [2, 3, 32, 32]);
    let v = images.to_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    for (c, value) in [(0, 51u8), (1, 102), (2, 255)] {
        assert!(v[c * 1024..(c + 1) * 1024].iter().all(|&p| p == value as f32 / 255.0), "channel {c}");
    }
    assert_eq!(v[3072 + 2 * 1024 + 3 * 32 + 4], pixel(100, 2, 3, 4) as f32 / 255.0);
    assert_eq!(labels.to_data().convert::<i64>().try_into_vec::<i64>().unwrap(), vec![4, 0]);

    let (images, _) = train.batch(&[5, 0, 3], &Device::flex());
    assert_eq!(images.dims(), [3, 3, 32, 32]);
}

#[test]
fn the_extracted_archive_folder_is_found_inside_dir() {
    let dir = TempDir::new("nested");
    write_cifar(&dir.0.join(CIFAR10_SUBDIR));
    let (train, test) = load_cifar10(&dir.0).unwrap();
    assert_eq!((train.len(), test.len()), (6, 3));
    assert_eq!(read_cifar10_batch(dir.0.join(CIFAR10_SUBDIR).join(CIFAR10_TEST_FILE)).unwrap(), test);
}

#[test]
fn a_missing_folder_or_file_lists_the_expected_names() {
    let dir = TempDir::new("missing");
    let msg = file_error(load_cifar10(&dir.0.join("not-here")), "not-here");
    assert!(msg.contains("folder not found"), "{msg}");
    for name in CIFAR10_TRAIN_FILES.iter().chain([&CIFAR10_TEST_FILE]) {
        assert!(msg.contains(name), "{msg}");
    }

    write_cifar(&dir.0);
    std::fs::remove_file(dir.0.join("data_batch_4.bin")).unwrap();
    let msg = file_error(load_cifar10(&dir.0), "missing data_batch_4.bin");
    assert!(msg.contains("test_batch.bin") && msg.contains("cifar-10-binary.tar.gz"), "{msg}");

    // The Python version's names: missing files, and a hint at the wrong download.
    let py = TempDir::new("python");
    std::fs::write(py.0.join("data_batch_1"), b"pickle").unwrap();
    let msg = file_error(load_cifar10(&py.0), "data_batch_1.bin");
    assert!(msg.contains("Python"), "{msg}");
}

#[test]
fn a_truncated_file_says_how_long_it_is_and_what_a_record_is() {
    let dir = TempDir::new("truncated");
    write_cifar(&dir.0);
    let cut = records(0, 2)[..CIFAR10_RECORD_BYTES + 1000].to_vec();
    std::fs::write(dir.0.join("data_batch_3.bin"), cut).unwrap();
    let msg = file_error(load_cifar10(&dir.0), "data_batch_3.bin");
    assert!(
        msg.contains("4073 bytes") && msg.contains("3073-byte records") && msg.contains("1 whole record(s) and 1000 bytes over"),
        "{msg}"
    );
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn an_out_of_range_label_names_the_record() {
    let dir = TempDir::new("label");
    write_cifar(&dir.0);
    let mut bad = records(100, 3);
    bad[2 * CIFAR10_RECORD_BYTES] = 10;
    std::fs::write(dir.0.join(CIFAR10_TEST_FILE), bad).unwrap();
    let msg = file_error(load_cifar10(&dir.0), "test_batch.bin");
    assert!(msg.contains("label 10 in record 2") && msg.contains("0..=9"), "{msg}");
}

#[test]
fn an_empty_file_is_an_error() {
    let dir = TempDir::new("empty");
    write_cifar(&dir.0);
    std::fs::write(dir.0.join("data_batch_1.bin"), []).unwrap();
    let msg = file_error(load_cifar10(&dir.0), "data_batch_1.bin");
    assert!(msg.contains("file is empty") && msg.contains("3073"), "{msg}");
}

#[test]
fn data_source_parses_prefixes_and_bare_folders() {
    let parse = |s: &str| DataSource::parse(s).unwrap();
    assert_eq!(parse("mnist:data/m"), DataSource::Mnist("data/m".into()));
    assert_eq!(parse("cifar10:/data/c"), DataSource::Cifar10("/data/c".into()));
    assert_eq!(parse("CIFAR-10:x"), DataSource::Cifar10("x".into()));
    assert_eq!(parse("data/mnist-10k"), DataSource::Mnist("data/mnist-10k".into()), "a bare folder is MNIST, as before");
    // Only the first ':' splits: the folder keeps its own.
    assert_eq!(parse("cifar10:/data/a:b"), DataSource::Cifar10("/data/a:b".into()));
    assert_eq!(parse("mnist:C:\\data"), DataSource::Mnist("C:\\data".into()));
    // A ':' inside a path that is not a prefix keeps it a bare folder.
    assert_eq!(parse("./runs:2/mnist"), DataSource::Mnist("./runs:2/mnist".into()));
    assert_eq!("cifar10:z".parse::<DataSource>().unwrap(), DataSource::Cifar10("z".into()));

    for bad in ["imagenet:/data", "cifar100:x", "cifar:x"] {
        let err = DataSource::parse(bad).unwrap_err();
        assert!(matches!(&err, QatError::InvalidConfig { field, .. } if field == "--data"), "{bad}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("mnist:DIR") && msg.contains("cifar10:DIR") && msg.contains("bare DIR"), "{msg}");
    }
    assert!(DataSource::parse("").unwrap_err().to_string().contains("empty data source"));
    assert!(DataSource::parse("cifar10:").unwrap_err().to_string().contains("no folder"));
}

#[test]
fn data_source_displays_round_trip_and_default_is_the_vendored_mnist() {
    for source in [DataSource::Mnist("a/b".into()), DataSource::Cifar10("/x/y:z".into()), DataSource::default()] {
        assert_eq!(DataSource::parse(&source.to_string()).unwrap(), source, "{source}");
    }
    assert_eq!(DataSource::Cifar10("d".into()).to_string(), "cifar10:d");
    assert_eq!(DataSource::default(), DataSource::Mnist(default_mnist_dir()));
    assert_eq!(DataSource::default().dir(), default_mnist_dir());
    assert_eq!(DataSource::default().load().unwrap(), load_mnist(&default_mnist_dir()).unwrap());
}

#[test]
fn data_source_loads_cifar() {
    let dir = TempDir::new("source");
    write_cifar(&dir.0);
    let source = DataSource::parse(&format!("cifar10:{}", dir.0.display())).unwrap();
    assert_eq!(source.name(), "cifar10");
    let (train, test) = source.load().unwrap();
    assert_eq!((train.len(), test.len(), train.channels), (6, 3, 3));
    // The same folder as MNIST is a clear error, not a misread.
    let msg = file_error(DataSource::Mnist(dir.0.clone()).load(), "train-images-idx3-ubyte");
    assert!(msg.contains("MNIST"), "{msg}");
}
