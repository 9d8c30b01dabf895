//! Convolution geometry: shapes, strides, padding, groups, and the im2col order in which every
//! engine model walks the taps of one output element.

use crate::error::{Error, Result};

/// Largest number of elements qconv accepts in one tensor (input, weight or output): 2^28, far
/// above any real layer; guards against absurd shapes before memory is allocated.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Largest number of multiply-accumulates qconv accepts for one layer (2^40, over a trillion):
/// a guard against geometries whose reference evaluation would run for hours.
pub const MAX_MACS: u64 = 1 << 40;

/// Zero padding of the input's spatial borders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Padding {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding {
    /// Symmetric padding `[ph, pw]` (PyTorch's form).
    pub fn symmetric(ph: usize, pw: usize) -> Self {
        Padding {
            top: ph,
            left: pw,
            bottom: ph,
            right: pw,
        }
    }

    /// Parses `[ph, pw]` or `[top, left, bottom, right]`.
    pub fn from_list(values: &[i64]) -> Result<Self> {
        if let Some(v) = values.iter().find(|&&v| v < 0) {
            return Err(Error::invalid("padding", format!("must be >= 0, got {v}")));
        }
        let v: Vec<usize> = values.iter().map(|&v| v as usize).collect();
        match v.as_slice() {
            [ph, pw] => Ok(Padding::symmetric(*ph, *pw)),
            [t, l, b, r] => Ok(Padding {
                top: *t,
                left: *l,
                bottom: *b,
                right: *r,
            }),
            _ => Err(Error::invalid(
                "padding",
                format!(
                    "expected [ph, pw] or [top, left, bottom, right], got {} values",
                    v.len()
                ),
            )),
        }
    }

    /// `[top, left, bottom, right]`.
    pub fn as_array(&self) -> [usize; 4] {
        [self.top, self.left, self.bottom, self.right]
    }

    /// Whether top == bottom and left == right.
    pub fn is_symmetric(&self) -> bool {
        self.top == self.bottom && self.left == self.right
    }
}

/// The order in which an engine walks the taps of one output element. It decides which products
/// are neighbours, and so which pairs a saturating int16 kernel adds together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReductionOrder {
    /// `k = (kh * KW + kw) * Cg + c`, channel fastest: NHWC im2col (FBGEMM, ONNX Runtime's
    /// QLinearConv).
    #[default]
    TapMajor,
    /// `k = (c * KH + kh) * KW + kw`, kernel column fastest: NCHW im2col (ONNX Runtime's
    /// ConvInteger).
    ChannelMajor,
}

/// The shape of a 2-D convolution: NCHW input, OIHW weight (I = C / groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub padding: Padding,
    pub groups: usize,
}

impl ConvGeometry {
    /// Validates the geometry: positive sizes, channels divisible by groups, a non-empty output
    /// and tensor sizes below [`MAX_ELEMENTS`].
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("input.shape[0] (batch)", self.batch),
            ("input.shape[1] (channels)", self.in_channels),
            ("input.shape[2] (height)", self.in_h),
            ("input.shape[3] (width)", self.in_w),
            ("weight.shape[0] (output channels)", self.out_channels),
            ("conv.kernel[0]", self.kernel[0]),
            ("conv.kernel[1]", self.kernel[1]),
            ("conv.stride[0]", self.stride[0]),
            ("conv.stride[1]", self.stride[1]),
            ("conv.dilation[0]", self.dilation[0]),
            ("conv.dilation[1]", self.dilation[1]),
            ("conv.groups", self.groups),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(Error::invalid(field, "must be > 0"));
            }
        }
        let bounded = [
            ("conv.padding", self.padding.top.max(self.padding.bottom)),
            ("conv.padding", self.padding.left.max(self.padding.right)),
            ("conv.stride", self.stride[0].max(self.stride[1])),
            ("conv.dilation", self.dilation[0].max(self.dilation[1])),
        ];
        for (field, v) in bounded {
            if v > MAX_ELEMENTS {
                return Err(Error::invalid(
                    field,
                    format!("{v} is absurdly large (limit {MAX_ELEMENTS})"),
                ));
            }
        }
        if !self.in_channels.is_multiple_of(self.groups) {
            return Err(Error::invalid(
                "conv.groups",
                format!(
                    "input channels {} are not divisible by groups {}",
                    self.in_channels, self.groups
                ),
            ));
        }
        if !self.out_channels.is_multiple_of(self.groups) {
            return Err(Error::invalid(
                "conv.groups",
                format!(
                    "output channels {} are not divisible by groups {}",
                    self.out_channels, self.groups
                ),
            ));
        }
        for (axis, name) in [(0, "height"), (1, "width")] {
            let (size, before, after) = if axis == 0 {
                (self.in_h, self.padding.top, self.padding.bottom)
            } else {
                (self.in_w, self.padding.left, self.padding.right)
            };
            let span = self.kernel_span(axis);
            let padded = size as u128 + before as u128 + after as u128;
            if padded < span {
                return Err(Error::invalid(
                    "conv",
                    format!(
                        "empty output: padded input {name} {padded} is smaller than the dilated \
                         kernel {name} {span}"
                    ),
                ));
            }
        }
        check_elements(
            "input.shape",
            &[self.batch, self.in_channels, self.in_h, self.in_w],
        )?;
        check_elements(
            "weight.shape",
            &[
                self.out_channels,
                self.in_channels / self.groups,
                self.kernel[0],
                self.kernel[1],
            ],
        )?;
        check_elements("output.shape", &self.output_shape())?;
        let macs =
            self.output_shape().iter().product::<usize>() as u128 * self.reduction_len() as u128;
        if macs > MAX_MACS as u128 {
            return Err(Error::invalid(
                "conv",
                format!(
                    "the layer needs {macs} multiply-accumulates, more than the limit {MAX_MACS}"
                ),
            ));
        }
        Ok(())
    }

    /// The dilated kernel's extent along `axis` (0 = height, 1 = width).
    fn kernel_span(&self, axis: usize) -> u128 {
        self.dilation[axis] as u128 * (self.kernel[axis] as u128 - 1) + 1
    }

    /// Output height.
    pub fn out_h(&self) -> usize {
        let padded = self.in_h + self.padding.top + self.padding.bottom;
        (padded - self.kernel_span(0) as usize) / self.stride[0] + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        let padded = self.in_w + self.padding.left + self.padding.right;
        (padded - self.kernel_span(1) as usize) / self.stride[1] + 1
    }

    /// Input channels per group.
    pub fn group_in_channels(&self) -> usize {
        self.in_channels / self.groups
    }

    /// Output channels per group.
    pub fn group_out_channels(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Length of one output element's reduction: KH * KW * C / groups.
    pub fn reduction_len(&self) -> usize {
        self.kernel[0] * self.kernel[1] * self.group_in_channels()
    }

    /// `[N, C, H, W]` of the input.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.in_h, self.in_w]
    }

    /// `[OC, C / groups, KH, KW]` of the weight.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.group_in_channels(),
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// `[N, OC, OH, OW]` of the output.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_h(), self.out_w()]
    }

    /// Multiply-accumulates of the whole convolution.
    pub fn macs(&self) -> u64 {
        let [n, oc, oh, ow] = self.output_shape();
        (n * oc * oh * ow) as u64 * self.reduction_len() as u64
    }

    /// Whether this is a depthwise convolution (one input channel per group).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels
    }

    /// The input position read by kernel tap (`r`, `s`) of output position (`oh`, `ow`), or
    /// `None` when the tap falls in the padding.
    #[inline]
    pub fn tap_position(&self, oh: usize, ow: usize, r: usize, s: usize) -> Option<(usize, usize)> {
        let ih = (oh * self.stride[0] + r * self.dilation[0]).checked_sub(self.padding.top)?;
        let iw = (ow * self.stride[1] + s * self.dilation[1]).checked_sub(self.padding.left)?;
        (ih < self.in_h && iw < self.in_w).then_some((ih, iw))
    }

    /// Splits a reduction index of the im2col order into (kernel row, kernel column, channel
    /// within the group). The order is tap-major, channel-minor: `k = (r * KW + s) * Cg + c`,
    /// which is the order of FBGEMM's and ONNX Runtime's NHWC im2col and therefore decides which
    /// products are paired by int16-saturating kernels.
    #[inline]
    pub fn split_reduction_index(&self, k: usize) -> (usize, usize, usize) {
        self.reduction_index(ReductionOrder::TapMajor, k)
    }

    /// Splits reduction index `k` of `order` into (kernel row, kernel column, channel within the
    /// group).
    #[inline]
    pub fn reduction_index(&self, order: ReductionOrder, k: usize) -> (usize, usize, usize) {
        match order {
            ReductionOrder::TapMajor => {
                let cg = self.group_in_channels();
                let tap = k / cg;
                (tap / self.kernel[1], tap % self.kernel[1], k % cg)
            }
            ReductionOrder::ChannelMajor => {
                let taps = self.kernel[0] * self.kernel[1];
                let tap = k % taps;
                (tap / self.kernel[1], tap % self.kernel[1], k / taps)
            }
        }
    }

    /// NCHW flat index of an input element.
    #[inline]
    pub fn input_index(&self, n: usize, c: usize, h: usize, w: usize) -> usize {
        ((n * self.in_channels + c) * self.in_h + h) * self.in_w + w
    }

    /// OIHW flat index of a weight element.
    #[inline]
    pub fn weight_index(&self, oc: usize, c: usize, r: usize, s: usize) -> usize {
        ((oc * self.group_in_channels() + c) * self.kernel[0] + r) * self.kernel[1] + s
    }

    /// NCHW flat index of an output element.
    #[inline]
    pub fn output_index(&self, n: usize, oc: usize, oh: usize, ow: usize) -> usize {
        ((n * self.out_channels + oc) * self.out_h() + oh) * self.out_w() + ow
    }

    /// Splits an NCHW output flat index into `[n, oc, oh, ow]`.
    pub fn output_coords(&self, index: usize) -> [usize; 4] {
        let (oh, ow) = (self.out_h(), self.out_w());
        [
            index / (ow * oh * self.out_channels),
            index / (ow * oh) % self.out_channels,
            index / ow % oh,
            index % ow,
        ]
    }
}

/// Checks that a shape's element count is representable and below [`MAX_ELEMENTS`].
pub fn check_elements(field: &str, shape: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    format!("shape {shape:?} has more than {MAX_ELEMENTS} elements"),
                )
            })?;
    }
    Ok(n)
}

/// Formats an `[n, c, h, w]` index as reports print it: `[0,3,5,7]`.
pub fn format_index(c: [usize; 4]) -> String {
    format!("[{},{},{},{}]", c[0], c[1], c[2], c[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> ConvGeometry {
        ConvGeometry {
            batch: 1,
            in_channels: 4,
            in_h: 7,
            in_w: 6,
            out_channels: 6,
            kernel: [3, 2],
            stride: [2, 1],
            dilation: [1, 2],
            padding: Padding {
                top: 1,
                left: 0,
                bottom: 2,
                right: 1,
            },
            groups: 2,
        }
    }

    #[test]
    fn output_size_follows_the_usual_formula() {
        let g = geometry();
        g.validate().unwrap();
        // (7 + 1 + 2 - 3) / 2 + 1 = 4; (6 + 0 + 1 - 3) / 1 + 1 = 5
        assert_eq!(g.output_shape(), [1, 6, 4, 5]);
        assert_eq!(g.reduction_len(), 3 * 2 * 2);
    }

    #[test]
    fn taps_in_padding_have_no_position() {
        let g = geometry();
        assert_eq!(g.tap_position(0, 0, 0, 0), None);
        assert_eq!(g.tap_position(0, 0, 1, 0), Some((0, 0)));
        assert_eq!(g.tap_position(3, 4, 2, 1), None); // ih = 6 + 2 - 1 = 7 >= 7
        assert_eq!(g.tap_position(3, 3, 1, 1), Some((6, 5)));
    }

    #[test]
    fn reduction_index_is_tap_major() {
        let g = geometry();
        assert_eq!(g.split_reduction_index(0), (0, 0, 0));
        assert_eq!(g.split_reduction_index(1), (0, 0, 1));
        assert_eq!(g.split_reduction_index(2), (0, 1, 0));
        assert_eq!(g.split_reduction_index(5), (1, 0, 1));
        let cm = ReductionOrder::ChannelMajor;
        assert_eq!(g.reduction_index(cm, 1), (0, 1, 0));
        assert_eq!(g.reduction_index(cm, 2), (1, 0, 0));
        assert_eq!(g.reduction_index(cm, 6), (0, 0, 1));
    }

    #[test]
    fn output_coords_invert_output_index() {
        let g = geometry();
        for i in 0..g.output_shape().iter().product::<usize>() {
            let [n, c, h, w] = g.output_coords(i);
            assert_eq!(g.output_index(n, c, h, w), i);
        }
    }

    #[test]
    fn invalid_geometries_are_refused() {
        let mut g = geometry();
        g.groups = 3;
        assert!(g.validate().unwrap_err().to_string().contains("divisible"));
        let mut g = geometry();
        g.kernel = [11, 1];
        assert!(
            g.validate()
                .unwrap_err()
                .to_string()
                .contains("empty output")
        );
        let mut g = geometry();
        g.stride = [0, 1];
        assert!(g.validate().unwrap_err().to_string().contains("stride"));
        let mut g = geometry();
        g.in_h = usize::MAX / 2;
        assert!(g.validate().is_err());
        let mut g = geometry();
        (g.in_h, g.in_w, g.kernel) = (16384, 16384, [8192, 8192]);
        (g.in_channels, g.out_channels, g.groups) = (1, 1, 1);
        g.padding = Padding::default();
        (g.stride, g.dilation) = ([1, 1], [1, 1]);
        let e = g.validate().unwrap_err().to_string();
        assert!(e.contains("multiply-accumulates"), "{e}");
    }
}
