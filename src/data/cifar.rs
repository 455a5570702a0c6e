//! Reader for the binary version of CIFAR-10 (`cifar-10-binary.tar.gz` from
//! <https://www.cs.toronto.edu/~kriz/cifar.html>, which extracts to `cifar-10-batches-bin/`).
//!
//! A batch file has no header: it is a plain run of 3073-byte records, each one label byte
//! (0..=9) followed by 3072 pixel bytes, the 32x32 red plane, then green, then blue, each
//! row-major. That is already the `CHW` layout [`Dataset`] keeps, so a record's pixels are copied
//! as they are. Without a header the file length is the only check on its integrity, so it must
//! be a whole number of records, and every label byte is checked, which also catches a file of
//! another dataset (CIFAR-100 records, for one, have two label bytes).

use std::fs;
use std::path::{Path, PathBuf};

use super::Dataset;
use super::idx::file_error;
use crate::error::Result;

/// Number of classes in CIFAR-10; labels must be below it.
pub const CIFAR10_CLASSES: usize = 10;

/// The training files, read in this order (10,000 images each in the real dataset).
pub const CIFAR10_TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];

/// The test file (10,000 images in the real dataset).
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";

/// The folder the official archive extracts to; accepted inside the folder a user names, so that
/// pointing at the download folder works too.
pub const CIFAR10_SUBDIR: &str = "cifar-10-batches-bin";

/// Channels, rows and columns of every CIFAR-10 image.
const SHAPE: [usize; 3] = [3, 32, 32];

/// Pixel bytes per image: 3 x 32 x 32.
const IMAGE_BYTES: usize = SHAPE[0] * SHAPE[1] * SHAPE[2];

/// Bytes per record: the label byte, then the image.
pub const CIFAR10_RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// Where to get the files, for the messages that say some are missing.
const DOWNLOAD_HINT: &str =
    "the binary version of CIFAR-10 (cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)";

/// Loads CIFAR-10 from `dir`; returns `(train, test)`: 3-channel 32x32 images, labels 0..=9.
///
/// `dir` holds the five [`CIFAR10_TRAIN_FILES`] and [`CIFAR10_TEST_FILE`], or holds the
/// [`CIFAR10_SUBDIR`] folder that holds them. The training set is the five files concatenated in
/// order, so with the real files its image `i` is record `i % 10000` of file `i / 10000 + 1`.
pub fn load_cifar10(dir: &Path) -> Result<(Dataset, Dataset)> {
    let dir = find_cifar10_dir(dir)?;
    let mut train = empty_dataset();
    for name in CIFAR10_TRAIN_FILES {
        read_records(&dir.join(name), &mut train)?;
    }
    let test = read_cifar10_batch(dir.join(CIFAR10_TEST_FILE))?;
    Ok((train, test))
}

/// Reads one CIFAR-10 batch file (any number of records, at least one) into a [`Dataset`].
///
/// Public so that a single file can be inspected or checked on its own; [`load_cifar10`] is the
/// usual entry point.
pub fn read_cifar10_batch(path: impl AsRef<Path>) -> Result<Dataset> {
    let mut data = empty_dataset();
    read_records(path.as_ref(), &mut data)?;
    Ok(data)
}

fn empty_dataset() -> Dataset {
    let [channels, rows, cols] = SHAPE;
    Dataset { images: Vec::new(), labels: Vec::new(), channels, rows, cols, classes: CIFAR10_CLASSES }
}

/// The folder that holds the six files: `dir` itself, or its [`CIFAR10_SUBDIR`] when `dir`
/// holds none of the files. Errors list every expected name, as the MNIST loader's do, since the
/// usual cause is a folder of the wrong download (the Python or MATLAB version) whose names
/// differ.
fn find_cifar10_dir(dir: &Path) -> Result<PathBuf> {
    let names: Vec<&str> = CIFAR10_TRAIN_FILES.iter().copied().chain([CIFAR10_TEST_FILE]).collect();
    let expected = names.join(", ");
    if !dir.is_dir() {
        return Err(file_error(
            dir,
            format!(
                "CIFAR-10 folder not found; it should be a folder holding {expected} (or a {CIFAR10_SUBDIR} folder holding them): {DOWNLOAD_HINT}"
            ),
        ));
    }
    let holds_any = |d: &Path| names.iter().any(|name| d.join(name).is_file());
    let nested = dir.join(CIFAR10_SUBDIR);
    let dir = if !holds_any(dir) && nested.is_dir() { nested } else { dir.to_path_buf() };

    let missing: Vec<&str> = names.iter().copied().filter(|name| !dir.join(name).is_file()).collect();
    if missing.is_empty() {
        return Ok(dir);
    }
    // The Python version names its files without `.bin` and holds pickles this loader cannot
    // read; saying so saves the user from renaming files into a second, confusing error.
    let python = dir.join("data_batch_1").is_file() || dir.join("cifar-10-batches-py").is_dir();
    let hint = if python { " This looks like the Python (pickle) version, which is not supported." } else { "" };
    Err(file_error(
        &dir,
        format!("missing {} in the CIFAR-10 folder; expected the files {expected} of {DOWNLOAD_HINT}.{hint}", missing.join(", ")),
    ))
}

/// Appends the records of the batch file at `path` to `data`, checking the file length and every
/// label first, so `data` only grows by whole, valid images.
fn read_records(path: &Path, data: &mut Dataset) -> Result<()> {
    // One batch file is 30 MB; reading it whole is simpler than streaming and costs nothing
    // noticeable next to the 150 MB the training images take in memory anyway.
    let raw = fs::read(path).map_err(|e| file_error(path, format!("cannot read the file: {e}")))?;
    let record = CIFAR10_RECORD_BYTES;
    if raw.is_empty() {
        return Err(file_error(
            path,
            format!(
                "file is empty; a CIFAR-10 batch file holds records of {record} bytes (1 label byte + {IMAGE_BYTES} pixel bytes); extract the archive again"
            ),
        ));
    }
    let (records, extra) = (raw.len() / record, raw.len() % record);
    if extra != 0 {
        let cifar100 =
            if raw.len() % (record + 1) == 0 { " Its length fits CIFAR-100's 3074-byte records, which are not supported." } else { "" };
        return Err(file_error(
            path,
            format!(
                "file is {} bytes, not a whole number of {record}-byte records (1 label byte + {IMAGE_BYTES} pixel bytes): {records} whole record(s) and {extra} bytes over; the file is probably truncated, download and extract it again.{cifar100}",
                raw.len()
            ),
        ));
    }
    // Checked before copying anything, and here once, so that training code can index by label
    // without a bounds check of its own and a bad label never turns into a confusing loss value.
    if let Some((i, &label)) = raw.iter().step_by(record).enumerate().find(|&(_, &l)| l as usize >= CIFAR10_CLASSES) {
        return Err(file_error(
            path,
            format!(
                "label {label} in record {i} (byte offset {}) is out of range; CIFAR-10 labels are 0..={}. Is this a CIFAR-10 batch file?",
                i * record,
                CIFAR10_CLASSES - 1
            ),
        ));
    }
    data.images.reserve(records * IMAGE_BYTES);
    data.labels.reserve(records);
    for chunk in raw.chunks_exact(record) {
        let (label, pixels) = chunk.split_at(1);
        data.labels.extend_from_slice(label);
        data.images.extend_from_slice(pixels);
    }
    Ok(())
}
