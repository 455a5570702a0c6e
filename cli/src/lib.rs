//! What the `burn-qat` command adds to the library: the benchmark cases behind `burn-qat bench`
//! (and the counting allocator that measures their peak memory) and the PNG reports `train`
//! draws. Kept out of `burn-qat` so that a library user builds none of it.

pub mod bench;
pub mod report;
