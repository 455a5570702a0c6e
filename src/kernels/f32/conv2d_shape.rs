//! The sizes of one 2-d convolution call, and the index arithmetic every kernel shares:
//! which output columns of a row read inside the (unpadded) input.

/// `x [n, c_in, h, w] * weight [c_out, c_in / groups, kh, kw] -> y [n, c_out, oh, ow]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// The padding before the first row and column.
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvShape {
    /// The shape of a call, or `None` when the sizes do not describe a non-empty convolution
    /// (the caller then leaves the call to burn, which reports the error).
    /// `padding` per axis as `(begin, end)`, as burn gives it: the kernels index from the
    /// beginning padding; the end padding only adds output rows or columns.
    pub fn new(
        [x, weight]: [&[usize]; 2],
        stride: [usize; 2],
        pads: [(usize, usize); 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Option<Self> {
        let (&[n, c_in, h, w], &[c_out, c_in_g, kh, kw]) = (x, weight) else { return None };
        let padding = pads.map(|(begin, _)| begin);
        let padded = |axis: usize| pads[axis].0 + pads[axis].1;
        if groups == 0 || c_in != c_in_g * groups || c_out % groups != 0 {
            return None;
        }
        if stride.contains(&0) || dilation.contains(&0) || [n, c_in, h, w, c_out, kh, kw].contains(&0) {
            return None;
        }
        let out = |size: usize, k: usize, axis: usize| {
            let padded = size + padded(axis);
            let extent = dilation[axis] * (k - 1) + 1;
            (padded >= extent).then(|| (padded - extent) / stride[axis] + 1)
        };
        let (oh, ow) = (out(h, kh, 0)?, out(w, kw, 1)?);
        Some(Self { n, c_in, h, w, c_out, kh, kw, stride, padding, dilation, groups, oh, ow })
    }

    pub fn c_in_per_group(&self) -> usize {
        self.c_in / self.groups
    }

    pub fn c_out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    /// Depthwise: one input channel per group (any channel multiplier).
    pub fn is_depthwise(&self) -> bool {
        self.c_in_per_group() == 1
    }

    /// A 1x1 kernel that reads every input pixel once: the input plane is its own im2col.
    pub fn is_pointwise(&self) -> bool {
        let same_size = self.oh == self.h && self.ow == self.w; // no end padding either
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.padding == [0, 0] && same_size
    }

    /// Rows of the im2col matrix of one group: `(channel, ki, kj)`.
    pub fn col_rows(&self) -> usize {
        self.c_in_per_group() * self.kh * self.kw
    }

    pub fn in_plane(&self) -> usize {
        self.h * self.w
    }

    pub fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// The input row read by output row `o` at kernel row `k`, if inside the input.
    #[inline]
    pub fn in_row(&self, o: usize, k: usize) -> Option<usize> {
        inside(o * self.stride[0] + k * self.dilation[0], self.padding[0], self.h)
    }

    /// For kernel column `k`: the output columns `lo..hi` that read inside the input, and the
    /// input column read by output column `lo`. Output column `o` reads `start + (o - lo) * stride`.
    #[inline]
    pub fn col_span(&self, k: usize) -> ColSpan {
        let (s, d, p) = (self.stride[1], self.dilation[1], self.padding[1]);
        let offset = k * d; // input column + p of output column 0
        let lo = if offset >= p { 0 } else { (p - offset).div_ceil(s) };
        // Last valid output column: o * s + offset - p <= w - 1.
        let hi = if self.w + p <= offset { 0 } else { ((self.w - 1 + p - offset) / s + 1).min(self.ow) };
        let lo = lo.min(hi);
        ColSpan { lo, hi, start: (lo * s + offset).saturating_sub(p) }
    }
}

/// See [`ConvShape::col_span`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColSpan {
    pub lo: usize,
    pub hi: usize,
    pub start: usize,
}

impl ColSpan {
    pub fn len(&self) -> usize {
        self.hi - self.lo
    }
}

#[inline]
fn inside(padded_index: usize, padding: usize, size: usize) -> Option<usize> {
    padded_index.checked_sub(padding).filter(|&i| i < size)
}
