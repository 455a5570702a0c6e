//! Reader for the IDX files that MNIST (and Fashion-MNIST, EMNIST, ...) are distributed in.
//!
//! An IDX file is a 4-byte magic number, one big-endian `u32` size per dimension, then the data,
//! row-major. The magic is `00 00 TT DD`: two zero bytes, a data-type code `TT` (`0x08` for
//! unsigned bytes, the only type MNIST uses) and the number of dimensions `DD`. So the
//! images magic 2051 is `0x00000803` (u8, 3 dims: count, rows, cols) and the labels magic 2049
//! is `0x00000801` (u8, 1 dim: count).
//!
//! The files are often kept gzip-compressed, as they are downloaded. We recognise that from the
//! gzip magic bytes rather than the `.gz` extension, because files get renamed and
//! decompressed in place by tools that do not always fix the name.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::error::{QatError, Result};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The most data bytes a header may promise. The full MNIST training images are 47 MB, so 2 GiB
/// leaves room for much larger IDX datasets while still catching a corrupt header before it
/// makes us try to allocate (or decompress) an absurd amount of memory.
const MAX_DATA_BYTES: u64 = 1 << 31;

/// The first two bytes of every gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// IDX type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// Reads an IDX images file (magic 2051), plain or gzip-compressed.
///
/// Returns `(pixels, n, rows, cols)` where `pixels` holds `n * rows * cols` bytes, image after
/// image, each image row-major.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<(Vec<u8>, usize, usize, usize)> {
    let path = path.as_ref();
    let (data, dims) = read_idx(path, 3, "images")?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    // With n > 0 a zero-sized image would make every later step (batching, a model's input
    // shape) meaningless; a 0-image file, on the other hand, is a valid if useless dataset.
    if n > 0 && (rows == 0 || cols == 0) {
        return Err(file_error(path, format!("header declares {n} images of {rows}x{cols} pixels; an image cannot be empty")));
    }
    Ok((data, n, rows, cols))
}

/// Reads an IDX labels file (magic 2049), plain or gzip-compressed: one byte per label.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let (data, _) = read_idx(path.as_ref(), 1, "labels")?;
    Ok(data)
}

/// Builds the crate's file error; every message in this module goes through here so that each
/// one starts with the path of the file it is about.
pub(crate) fn file_error(path: &Path, reason: impl Into<String>) -> QatError {
    QatError::File { path: path.display().to_string(), reason: reason.into() }
}

/// Reads an unsigned-byte IDX file with `want_dims` dimensions; returns its data and sizes.
///
/// `kind` ("images", "labels") only makes the error messages say what file was expected.
fn read_idx(path: &Path, want_dims: u8, kind: &str) -> Result<(Vec<u8>, Vec<usize>)> {
    // MNIST files are small (47 MB uncompressed for the largest), so reading the whole file
    // first is simpler than streaming and costs nothing noticeable.
    let raw = fs::read(path).map_err(|e| file_error(path, format!("cannot read the file: {e}")))?;
    let gzipped = raw.starts_with(&GZIP_MAGIC);

    // Both cases are read through the same `Read`, so the header and size checks below are
    // written once. `MultiGzDecoder` rather than `GzDecoder`: gzip allows several concatenated
    // members and `gunzip` accepts them, so we do too; anything after the last member that is not
    // another gzip member is reported as corrupt instead of being silently ignored.
    let mut source: Box<dyn Read + '_> = if gzipped { Box::new(MultiGzDecoder::new(&raw[..])) } else { Box::new(&raw[..]) };
    // Only the gzip decoder can fail to read; a byte slice never does. flate2 reports a cut-off
    // stream or junk after the last member as "unexpected end of file", hence "or truncated".
    let read_err = |e: io::Error| file_error(path, format!("corrupt or truncated gzip data: {e}"));

    // The magic number.
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut source, &mut magic).map_err(read_err)?;
    if got < magic.len() {
        return Err(file_error(path, format!("file is too short to be an IDX file: {got} bytes, the magic number alone needs 4")));
    }
    check_magic(path, magic, want_dims, kind)?;

    // One big-endian u32 per dimension.
    let mut dims = Vec::with_capacity(want_dims as usize);
    for d in 0..want_dims as usize {
        let mut size = [0u8; 4];
        let got = read_up_to(&mut source, &mut size).map_err(read_err)?;
        if got < size.len() {
            return Err(file_error(path, format!("truncated header: it ends inside the size of dimension {d} of {want_dims}")));
        }
        dims.push(u32::from_be_bytes(size) as u64);
    }

    // u64 with checked multiplication: 3 u32 sizes can overflow even a u64, and we want to
    // reject such a header with a message, not wrap around to a small number.
    let total = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&t| t <= MAX_DATA_BYTES).ok_or_else(|| {
        file_error(
            path,
            format!(
                "header declares dimensions {} ({} bytes), more than the {} byte limit; the header is probably corrupt",
                format_dims(&dims),
                dims.iter().map(|&d| d as u128).product::<u128>(),
                MAX_DATA_BYTES
            ),
        )
    })?;

    // Read exactly the promised bytes. `take` + `read_to_end` grows the buffer as data arrives
    // instead of allocating `total` up front, so a lying header on a short file costs nothing.
    let mut data = Vec::new();
    source.by_ref().take(total).read_to_end(&mut data).map_err(read_err)?;
    if (data.len() as u64) < total {
        return Err(file_error(
            path,
            format!(
                "truncated data: the header declares {} {kind} ({} bytes) but the file holds only {} bytes after the header",
                format_dims(&dims),
                total,
                data.len()
            ),
        ));
    }

    // Anything left is trailing garbage, usually two files concatenated or a wrong header.
    // Reading on to the end also makes the gzip decoder check the CRC and length that close
    // each gzip member, which is how a flipped bit in the compressed data gets caught.
    let extra = io::copy(&mut source, &mut io::sink()).map_err(read_err)?;
    if extra > 0 {
        return Err(file_error(
            path,
            format!("trailing data: {extra} bytes after the {total} bytes the header declares ({})", format_dims(&dims)),
        ));
    }

    Ok((data, dims.into_iter().map(|d| d as usize).collect()))
}

/// Checks the 4 magic bytes, telling apart "not an IDX file at all", "an IDX file of another
/// element type" and "an IDX file with the wrong number of dimensions", since each points to a
/// different mistake (a wrong file, a float dataset, images and labels swapped).
fn check_magic(path: &Path, magic: [u8; 4], want_dims: u8, kind: &str) -> Result<()> {
    let value = u32::from_be_bytes(magic);
    let expected = u32::from_be_bytes([0, 0, TYPE_U8, want_dims]);
    if value == expected {
        return Ok(());
    }
    let reason = if magic[0] != 0 || magic[1] != 0 {
        format!("bad magic number 0x{value:08x} ({value}): not an IDX file; an IDX {kind} file starts with 0x{expected:08x} ({expected})")
    } else if magic[2] != TYPE_U8 {
        format!(
            "bad magic number 0x{value:08x} ({value}): element type 0x{:02x} is not supported, only unsigned bytes (0x08); expected 0x{expected:08x} ({expected}) for {kind}",
            magic[2]
        )
    } else {
        format!(
            "bad magic number 0x{value:08x} ({value}): the file has {} dimension(s), {kind} need {want_dims}; expected magic 0x{expected:08x} ({expected}). Were the images and labels files swapped?",
            magic[3]
        )
    };
    Err(file_error(path, reason))
}

/// Fills `buf` as far as the source allows; returns how many bytes it got. Unlike `read_exact`,
/// running out of data is not an error here, so the callers can say which part is missing.
fn read_up_to(source: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// `[2000, 28, 28]` -> `"2000x28x28"`, the way people write image dataset shapes.
fn format_dims(dims: &[u64]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_support::{TempDir, gzip, idx_bytes};

    /// The message of an error, to assert on; panics (fails the test) on `Ok`.
    fn err_message<T: std::fmt::Debug>(result: Result<T>) -> String {
        result.expect_err("expected an error").to_string()
    }

    #[test]
    fn round_trip_plain_and_gzip() {
        let dir = TempDir::new("idx_round_trip");
        let pixels: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 7 % 256) as u8).collect();
        let labels = vec![3u8, 0, 9];
        let images_file = idx_bytes(IMAGES_MAGIC, &[3, 4, 5], &pixels);
        let labels_file = idx_bytes(LABELS_MAGIC, &[3], &labels);

        // The gzipped copies get names without `.gz` on purpose: detection is by content.
        let cases = [("plain", images_file.clone(), labels_file.clone()), ("gz", gzip(&images_file), gzip(&labels_file))];
        for (name, images, labels_bytes) in cases {
            let ip = dir.write(&format!("images-{name}"), &images);
            let lp = dir.write(&format!("labels-{name}"), &labels_bytes);
            assert_eq!(read_idx_images(&ip).unwrap(), (pixels.clone(), 3, 4, 5), "{name}");
            assert_eq!(read_idx_labels(&lp).unwrap(), labels, "{name}");
        }
    }

    #[test]
    fn empty_file_sets_are_valid() {
        // Zero images is odd but consistent; it must not be mistaken for truncation.
        let dir = TempDir::new("idx_empty");
        let p = dir.write("images", &idx_bytes(IMAGES_MAGIC, &[0, 28, 28], &[]));
        assert_eq!(read_idx_images(&p).unwrap(), (vec![], 0, 28, 28));
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = TempDir::new("idx_missing");
        let p = dir.path().join("no-such-file");
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("no-such-file") && msg.contains("cannot read"), "{msg}");
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let dir = TempDir::new("idx_magic");
        let mut bytes = idx_bytes(IMAGES_MAGIC, &[1, 2, 2], &[0; 4]);
        bytes[..4].copy_from_slice(b"PK\x03\x04");
        let p = dir.write("zip", &bytes);
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("bad magic number") && msg.contains("not an IDX file") && msg.contains("zip"), "{msg}");

        // An IDX file of floats (type 0x0d) is an IDX file, just not one we can use.
        let p = dir.write("floats", &idx_bytes(0x0000_0d01, &[1], &[0; 4]));
        let msg = err_message(read_idx_labels(&p));
        assert!(msg.contains("bad magic number") && msg.contains("element type 0x0d"), "{msg}");
    }

    #[test]
    fn wrong_dimension_count_is_rejected() {
        let dir = TempDir::new("idx_dims");
        // A labels file read as images: the classic swap.
        let p = dir.write("labels", &idx_bytes(LABELS_MAGIC, &[2], &[1, 2]));
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("1 dimension(s), images need 3") && msg.contains("2049"), "{msg}");

        let p = dir.write("images", &idx_bytes(IMAGES_MAGIC, &[1, 1, 1], &[1]));
        let msg = err_message(read_idx_labels(&p));
        assert!(msg.contains("3 dimension(s), labels need 1"), "{msg}");
    }

    #[test]
    fn truncated_files_are_rejected() {
        let dir = TempDir::new("idx_truncated");
        let full = idx_bytes(IMAGES_MAGIC, &[2, 3, 3], &[7; 18]);

        let p = dir.write("short-data", &full[..full.len() - 1]);
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("truncated data") && msg.contains("2x3x3") && msg.contains("18 bytes") && msg.contains("only 17"), "{msg}");

        // The same, but the truncation is hidden inside a valid gzip stream.
        let p = dir.write("short-data-gz", &gzip(&full[..full.len() - 5]));
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("truncated data") && msg.contains("only 13"), "{msg}");

        let p = dir.write("short-header", &full[..10]);
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("truncated header"), "{msg}");

        let p = dir.write("tiny", &full[..2]);
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("too short"), "{msg}");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let dir = TempDir::new("idx_trailing");
        let mut bytes = idx_bytes(LABELS_MAGIC, &[3], &[1, 2, 3]);
        bytes.extend_from_slice(&[0, 0]);
        let p = dir.write("plain", &bytes);
        let msg = err_message(read_idx_labels(&p));
        assert!(msg.contains("trailing data: 2 bytes"), "{msg}");

        let p = dir.write("gz", &gzip(&bytes));
        let msg = err_message(read_idx_labels(&p));
        assert!(msg.contains("trailing data: 2 bytes"), "{msg}");
    }

    #[test]
    fn absurd_dimensions_are_rejected_before_allocating() {
        let dir = TempDir::new("idx_absurd");
        // 70000 * 70000 * 28 bytes: over the limit, though each size alone looks plausible.
        let p = dir.write("big", &idx_bytes(IMAGES_MAGIC, &[70_000, 70_000, 28], &[]));
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("70000x70000x28") && msg.contains("probably corrupt"), "{msg}");

        // Overflows u64; must still be an error, not a wrap-around.
        let p = dir.write("overflow", &idx_bytes(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[]));
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("probably corrupt"), "{msg}");

        let p = dir.write("empty-images", &idx_bytes(IMAGES_MAGIC, &[5, 0, 28], &[]));
        let msg = err_message(read_idx_images(&p));
        assert!(msg.contains("cannot be empty"), "{msg}");
    }

    #[test]
    fn corrupt_gzip_is_rejected() {
        let dir = TempDir::new("idx_gzip");
        let good = gzip(&idx_bytes(LABELS_MAGIC, &[4], &[1, 2, 3, 4]));

        // A gzip magic followed by junk: the header itself is invalid.
        let p = dir.write("junk", &[0x1f, 0x8b, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let msg = err_message(read_idx_labels(&p));
        assert!(msg.contains("gzip"), "{msg}");

        // A flipped byte in the CRC that ends the stream; only a full read notices.
        let mut bad_crc = good.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 0xff;
        let p = dir.write("bad-crc", &bad_crc);
        let msg = err_message(read_idx_labels(&p));
        assert!(msg.contains("corrupt or truncated gzip data"), "{msg}");

        // A stream cut off before its end.
        let p = dir.write("cut", &good[..good.len() - 4]);
        let msg = err_message(read_idx_labels(&p));
        assert!(msg.contains("gzip"), "{msg}");

        // Bytes after the gzip stream that are not another gzip member.
        let mut tail = good.clone();
        tail.extend_from_slice(b"garbage");
        let p = dir.write("tail", &tail);
        let msg = err_message(read_idx_labels(&p));
        assert!(msg.contains("corrupt or truncated gzip data"), "{msg}");
    }

    #[test]
    fn concatenated_gzip_members_are_read_as_one() {
        // `cat a.gz b.gz` is a valid gzip file whose content is a followed by b.
        let dir = TempDir::new("idx_multi");
        let bytes = idx_bytes(LABELS_MAGIC, &[4], &[1, 2, 3, 4]);
        let mut two = gzip(&bytes[..6]);
        two.extend(gzip(&bytes[6..]));
        let p = dir.write("two-members", &two);
        assert_eq!(read_idx_labels(&p).unwrap(), vec![1, 2, 3, 4]);
    }
}
