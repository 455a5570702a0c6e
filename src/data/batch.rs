//! Turning a [`Dataset`] into tensors, and a reproducible shuffle to pick the batches.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::Dataset;

impl Dataset {
    /// The images and labels at `indices`, in that order, as tensors on `device`.
    ///
    /// Returns images as floats in [0, 1] (pixel / 255) of shape `[B, channels, rows, cols]`,
    /// the `NCHW` layout conv layers take, and the labels as `[B]` Ints.
    /// An empty `indices` gives tensors with `B = 0`.
    ///
    /// # Panics
    ///
    /// If an index is `>= self.len()`: indices come from the program, not from a file, so a bad
    /// one is a bug to surface at once.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let pixels = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * pixels);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            assert!(i < self.len(), "batch index {i} out of range for a dataset of {} images", self.len());
            // Dividing (not multiplying by 1/255) gives the correctly rounded f32 for every
            // pixel, the same values as torchvision's ToTensor.
            images.extend(self.images[i * pixels..(i + 1) * pixels].iter().map(|&p| p as f32 / 255.0));
            labels.push(self.labels[i] as i64);
        }
        let b = indices.len();
        let images = Tensor::from_data(TensorData::new(images, [b, self.channels, self.rows, self.cols]), device);
        let labels = Tensor::from_data(TensorData::new(labels, [b]), device);
        (images, labels)
    }
}

/// A random permutation of `0..len`, fixed by `seed`.
///
/// Fisher-Yates driven by splitmix64, both written out here: a shuffle from the `rand` crate may
/// change between its versions, and then so would every training run. This one gives the same
/// order for the same `(len, seed)` on every platform and forever.
pub fn shuffled_indices(len: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..len).collect();
    let mut rng = SplitMix64(seed);
    // Walk down from the end, swapping each slot with a uniformly chosen one at or before it.
    for i in (1..len).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        indices.swap(i, j);
    }
    indices
}

/// splitmix64 (Steele, Lea and Flood, 2014): a 64-bit state advanced by a constant and
/// scrambled. Tiny, fast and passes BigCrush, which is plenty for shuffling data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..n` (`n > 0`).
    ///
    /// Takes the high 64 bits of `x * n` (Lemire's method) instead of `x % n`; with rejection of
    /// the few `x` that would over-represent some results, so every value is exactly equally
    /// likely.
    fn below(&mut self, n: u64) -> u64 {
        // Values of the low half below this threshold belong to an incomplete last "round" of
        // 2^64 / n and are redrawn; that is `2^64 mod n`, computed without 128-bit division.
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = self.next_u64() as u128 * n as u128;
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_dataset() -> Dataset {
        // 3 images of 2x2 with labels 7, 0, 9; the last pixel is full white.
        let images = vec![0, 17, 34, 51, 68, 85, 102, 119, 136, 153, 170, 255];
        Dataset { images, labels: vec![7, 0, 9], channels: 1, rows: 2, cols: 2, classes: 10 }
    }

    #[test]
    fn batch_has_the_right_shape_values_and_order() {
        let device = Device::flex();
        let data = tiny_dataset();
        let (images, labels) = data.batch(&[2, 0], &device);
        assert_eq!(images.dims(), [2, 1, 2, 2]);
        assert_eq!(labels.dims(), [2]);

        let pixels = images.to_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let expected: Vec<f32> = [136u8, 153, 170, 255, 0, 17, 34, 51].iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(pixels, expected);
        assert_eq!(pixels[3], 1.0);
        assert_eq!(pixels[4], 0.0);

        let labels = labels.to_data().convert::<i64>().try_into_vec::<i64>().unwrap();
        assert_eq!(labels, vec![9, 7]);
    }

    #[test]
    fn empty_batch_is_allowed() {
        let (images, labels) = tiny_dataset().batch(&[], &Device::flex());
        assert_eq!(images.dims(), [0, 1, 2, 2]);
        assert_eq!(labels.dims(), [0]);
    }

    #[test]
    fn colour_batch_keeps_each_image_chw() {
        // 2 images of 2 channels x 1x2 pixels: image i, channel c, pixel x holds 100i + 10c + x.
        let images = vec![0, 1, 10, 11, 100, 101, 110, 111];
        let data = Dataset { images, labels: vec![3, 4], channels: 2, rows: 1, cols: 2, classes: 10 };
        let (images, _) = data.batch(&[1, 0], &Device::flex());
        assert_eq!(images.dims(), [2, 2, 1, 2]);
        let pixels = images.to_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let expected: Vec<f32> = [100u8, 101, 110, 111, 0, 1, 10, 11].iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(pixels, expected);
    }

    #[test]
    #[should_panic(expected = "batch index 3 out of range")]
    fn batch_index_out_of_range_panics() {
        tiny_dataset().batch(&[3], &Device::flex());
    }

    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        // First outputs of the reference C implementation for seed 0.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64(1);
        for n in [1, 2, 3, 7, 10, 1000, u64::MAX] {
            for _ in 0..100 {
                assert!(rng.below(n) < n);
            }
        }
    }

    #[test]
    fn shuffle_is_a_deterministic_permutation() {
        let a = shuffled_indices(1000, 42);
        assert_eq!(a, shuffled_indices(1000, 42), "same seed, same order");
        assert_ne!(a, shuffled_indices(1000, 43), "another seed, another order");
        assert_ne!(a, (0..1000).collect::<Vec<_>>(), "actually shuffled");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>(), "a permutation");

        assert_eq!(shuffled_indices(0, 5), Vec::<usize>::new());
        assert_eq!(shuffled_indices(1, 5), vec![0]);
    }

    #[test]
    fn shuffle_is_roughly_uniform() {
        // Over many seeds, each of the 6 orders of 3 items should come up about 1/6 of the time;
        // a classic off-by-one in Fisher-Yates makes some orders impossible or twice as likely.
        let mut counts = std::collections::HashMap::new();
        let trials = 60_000;
        for seed in 0..trials {
            *counts.entry(shuffled_indices(3, seed)).or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 6);
        for (order, &count) in &counts {
            assert!((9_000..11_000).contains(&count), "{order:?}: {count}");
        }
    }
}
