//! Image classification datasets: reading them into memory and turning them into batches.
//!
//! Two formats: MNIST-style IDX files (grey, [`load_mnist`]) and the binary version of CIFAR-10
//! (colour, [`load_cifar10`]); [`DataSource`] picks one from a command-line string.
//!
//! The crate ships a 10,000-digit MNIST subset in `data/mnist-10k` (see its README for the
//! attribution) so that tests and examples need no download; [`load_mnist`] reads that folder or
//! any other with the four standard MNIST file names, which includes the full MNIST and
//! Fashion-MNIST.

mod batch;
mod cifar;
mod idx;
mod source;

use std::path::{Path, PathBuf};

pub use batch::shuffled_indices;
pub use cifar::{
    CIFAR10_CLASSES, CIFAR10_RECORD_BYTES, CIFAR10_SUBDIR, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, load_cifar10, read_cifar10_batch,
};
pub use idx::{IMAGES_MAGIC, LABELS_MAGIC, read_idx_images, read_idx_labels};
pub use source::DataSource;

use crate::error::Result;
use idx::file_error;

/// Number of classes in MNIST and Fashion-MNIST; labels must be below it.
pub const MNIST_CLASSES: usize = 10;

/// The four files of an MNIST-format dataset, without the optional `.gz`, in the order
/// train images, train labels, test images, test labels.
pub const MNIST_FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// Labelled images held in memory as raw bytes.
///
/// Bytes rather than floats because that is 4x smaller and what the files contain; conversion
/// to a float tensor happens per batch in [`Dataset::batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// `len() * channels * rows * cols` pixels, 0..=255: image after image, each in `CHW`
    /// order (one `rows x cols` row-major plane per channel), the layout conv layers take, so a
    /// batch is a plain copy.
    pub images: Vec<u8>,
    /// One label per image, each below `classes`.
    pub labels: Vec<u8>,
    /// Colour channels per image: 1 for grey (MNIST), 3 for RGB (CIFAR-10).
    pub channels: usize,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// Number of classes the labels are drawn from.
    pub classes: usize,
}

impl Dataset {
    /// Number of images (and labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The shape of one image, `[channels, rows, cols]`: what a model's input layer (and an
    /// exported model's input, after the batch dimension) must be built for.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.channels, self.rows, self.cols]
    }

    /// Bytes per image, `channels * rows * cols`.
    pub fn image_len(&self) -> usize {
        self.channels * self.rows * self.cols
    }

    /// The examples `range` (clamped to the dataset), as a dataset of their own.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Dataset {
        let (start, end) = (range.start.min(self.len()), range.end.min(self.len()));
        let pixels = self.image_len();
        Dataset {
            images: self.images[start * pixels..end.max(start) * pixels].to_vec(),
            labels: self.labels[start..end.max(start)].to_vec(),
            ..self.clone()
        }
    }
}

/// The MNIST subset shipped with the crate: `<crate root>/data/mnist-10k`.
///
/// Uses the path of the crate's sources at compile time, which is right for tests, examples and
/// binaries run from a checkout; a program installed elsewhere should pass its own folder to
/// [`load_mnist`].
pub fn default_mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join("mnist-10k")
}

/// Loads an MNIST-format dataset from `dir`; returns `(train, test)`.
///
/// `dir` must hold the four files of [`MNIST_FILES`], each either as named or with `.gz`
/// appended (if both exist, the uncompressed one is used). Whether a file is compressed is
/// decided by its content, not its name. Image and label counts must agree and every label must
/// be below [`MNIST_CLASSES`].
pub fn load_mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    let [train_images, train_labels, test_images, test_labels] = find_mnist_files(dir)?;
    let train = load_split(&train_images, &train_labels)?;
    let test = load_split(&test_images, &test_labels)?;
    // A model is built for one input size; a test set of another size is a wrong folder mix-up
    // better caught here than as a shape error deep inside the first forward pass.
    if !test.is_empty() && !train.is_empty() && (test.rows, test.cols) != (train.rows, train.cols) {
        return Err(file_error(
            &test_images,
            format!(
                "test images are {}x{} but the training images ({}) are {}x{}",
                test.rows,
                test.cols,
                train_images.display(),
                train.rows,
                train.cols
            ),
        ));
    }
    Ok((train, test))
}

/// Resolves the four MNIST files in `dir`, or says which are missing.
///
/// The error lists all four expected names, not only the missing ones, because the usual cause
/// is a folder with differently named files (`train-images.idx3-ubyte`, a `mnist.npz`, ...) and
/// the user then needs to see the exact names to rename to.
fn find_mnist_files(dir: &Path) -> Result<[PathBuf; 4]> {
    let expected = MNIST_FILES.map(|name| format!("{name}[.gz]")).join(", ");
    if !dir.is_dir() {
        return Err(file_error(dir, format!("MNIST folder not found; it should be a folder holding {expected}")));
    }
    let found = MNIST_FILES.map(|name| {
        let plain = dir.join(name);
        let gz = dir.join(format!("{name}.gz"));
        if plain.is_file() {
            Some(plain)
        } else if gz.is_file() {
            Some(gz)
        } else {
            None
        }
    });
    let missing: Vec<&str> = MNIST_FILES.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(name, _)| *name).collect();
    if !missing.is_empty() {
        return Err(file_error(dir, format!("missing {} in the MNIST folder; expected the files {expected}", missing.join(", "))));
    }
    Ok(found.map(|f| f.expect("checked above: no file is missing")))
}

/// Reads one images file and its labels file into a [`Dataset`], checking that they belong
/// together.
fn load_split(images_path: &Path, labels_path: &Path) -> Result<Dataset> {
    let (images, n, rows, cols) = read_idx_images(images_path)?;
    let labels = read_idx_labels(labels_path)?;
    if labels.len() != n {
        return Err(file_error(labels_path, format!("holds {} labels but {} holds {n} images", labels.len(), images_path.display())));
    }
    // Checked here, once, so that training code can index by label without a bounds check of
    // its own and a bad label never turns into a confusing loss value.
    if let Some((i, &label)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= MNIST_CLASSES) {
        return Err(file_error(
            labels_path,
            format!("label {label} at index {i} is out of range; MNIST labels are 0..={}", MNIST_CLASSES - 1),
        ));
    }
    Ok(Dataset { images, labels, channels: 1, rows, cols, classes: MNIST_CLASSES })
}

/// Helpers shared by the tests of this module's files: a self-cleaning temp folder and writers
/// for synthetic IDX files.
#[cfg(test)]
pub(crate) mod test_support {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh folder under the system temp dir, removed again when dropped (also when the test
    /// fails, since drop runs while unwinding).
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            // Process id + counter keeps folders apart between parallel tests and between
            // concurrent `cargo test` runs.
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("burn-qat-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        /// Writes `bytes` to `name` in this folder; returns the file's path.
        pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).expect("write temp file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An IDX file: magic, big-endian sizes, then `data` as is (so tests can make it
    /// inconsistent with the sizes on purpose).
    pub(crate) fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    /// `bytes` gzip-compressed.
    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("gzip in memory");
        encoder.finish().expect("gzip in memory")
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{TempDir, gzip, idx_bytes};
    use super::*;

    /// Writes a small, valid MNIST-format folder: `n_train` / `n_test` images of 2x3 pixels.
    /// The train files are gzipped and the test files not, so one load covers both.
    fn write_tiny_mnist(dir: &TempDir, n_train: u32, n_test: u32) {
        let split = |n: u32| {
            let images: Vec<u8> = (0..n * 6).map(|i| i as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            (idx_bytes(IMAGES_MAGIC, &[n, 2, 3], &images), idx_bytes(LABELS_MAGIC, &[n], &labels))
        };
        let (images, labels) = split(n_train);
        dir.write("train-images-idx3-ubyte.gz", &gzip(&images));
        dir.write("train-labels-idx1-ubyte.gz", &gzip(&labels));
        let (images, labels) = split(n_test);
        dir.write("t10k-images-idx3-ubyte", &images);
        dir.write("t10k-labels-idx1-ubyte", &labels);
    }

    #[test]
    fn loads_a_synthetic_folder() {
        let dir = TempDir::new("mnist_synthetic");
        write_tiny_mnist(&dir, 12, 4);
        let (train, test) = load_mnist(dir.path()).unwrap();
        assert_eq!((train.len(), train.rows, train.cols, train.classes), (12, 2, 3, 10));
        assert_eq!(train.image_shape(), [1, 2, 3]);
        assert_eq!(train.images.len(), 12 * 6);
        assert_eq!(train.labels[11], 1);
        assert_eq!(test.len(), 4);
        assert!(!test.is_empty());
        assert_eq!(test.images[..6], [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn missing_folder_or_file_lists_the_expected_names() {
        let dir = TempDir::new("mnist_missing");
        let gone = dir.path().join("not-here");
        let msg = load_mnist(&gone).unwrap_err().to_string();
        assert!(msg.contains("not-here") && msg.contains("folder not found"), "{msg}");
        for name in MNIST_FILES {
            assert!(msg.contains(name), "{msg}");
        }

        write_tiny_mnist(&dir, 2, 2);
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        let msg = load_mnist(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("missing t10k-labels-idx1-ubyte in the MNIST folder"), "{msg}");
        for name in MNIST_FILES {
            assert!(msg.contains(name), "{msg}");
        }
    }

    #[test]
    fn count_mismatch_and_bad_labels_are_rejected() {
        let dir = TempDir::new("mnist_mismatch");
        write_tiny_mnist(&dir, 3, 2);
        dir.write("t10k-labels-idx1-ubyte", &idx_bytes(LABELS_MAGIC, &[3], &[0, 1, 2]));
        let msg = load_mnist(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("t10k-labels-idx1-ubyte: holds 3 labels but") && msg.contains("holds 2 images"), "{msg}");

        dir.write("t10k-labels-idx1-ubyte", &idx_bytes(LABELS_MAGIC, &[2], &[0, 10]));
        let msg = load_mnist(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("label 10 at index 1 is out of range"), "{msg}");
    }

    #[test]
    fn mismatched_image_sizes_are_rejected() {
        let dir = TempDir::new("mnist_sizes");
        write_tiny_mnist(&dir, 2, 1);
        dir.write("t10k-images-idx3-ubyte", &idx_bytes(IMAGES_MAGIC, &[1, 3, 2], &[0; 6]));
        let msg = load_mnist(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("test images are 3x2 but the training images") && msg.contains("are 2x3"), "{msg}");
    }

    #[test]
    fn loads_the_vendored_mnist_subset() {
        let (train, test) = load_mnist(&default_mnist_dir()).unwrap();
        for (set, n) in [(&train, 8_000), (&test, 2_000)] {
            assert_eq!((set.len(), set.rows, set.cols, set.classes), (n, 28, 28, 10));
            assert_eq!(set.images.len(), n * 28 * 28);
            let mut per_class = [0usize; 10];
            for &l in &set.labels {
                per_class[l as usize] += 1; // also proves every label is < 10
            }
            // Every digit present, and roughly balanced (MNIST has 9-11% per class).
            assert!(per_class.iter().all(|&c| c * 20 > n), "{per_class:?}");
            // Real digits: mostly black background with some full-white strokes.
            assert!(set.images.contains(&255));
            let zeros = set.images.iter().filter(|&&p| p == 0).count();
            assert!(zeros * 2 > set.images.len());
        }
    }
}
