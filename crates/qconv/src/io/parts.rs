//! A layer given as plain values: the fields of a layer file after its values are loaded. The TOML
//! reader and the Python bindings build layers through [`LayerParts::build`], so both validate the
//! same way and name fields the same way.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::Padding;
use crate::layer::{Activations, ConvLayer, ConvParams, PaddingMode, Weights};
use crate::quant::WeightQuant;

use super::{bias, int32, output_quant, to_i32_data, weight_axis};

/// One quantized tensor: type, NCHW / OIHW shape, integers, and its quantization as given.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorParts {
    pub dtype: DType,
    pub shape: [usize; 4],
    pub data: Vec<i32>,
    /// The scales and whether they were given as a list (`None`: no scale, ONNX ConvInteger).
    pub scales: Option<(Vec<f64>, bool)>,
    /// The zero points and whether they were given as a list.
    pub zero_points: (Vec<i64>, bool),
    /// The quantization axis as given (`None`: inferred; only 0 is supported).
    pub axis: Option<i64>,
}

impl TensorParts {
    /// A tensor from a type name, a shape of any rank (must be 4-D) and integers of any width;
    /// `field` (`input`, `weight`) names it in errors.
    pub fn from_values(
        field: &str,
        dtype: &str,
        shape: &[usize],
        values: &[i64],
        scales: Option<(Vec<f64>, bool)>,
        zero_points: (Vec<i64>, bool),
        axis: Option<i64>,
    ) -> Result<TensorParts> {
        let dtype: DType = dtype.parse().map_err(|e: Error| e.within(field))?;
        let shape: [usize; 4] = shape.try_into().map_err(|_| {
            Error::invalid(
                format!("{field}.shape"),
                format!(
                    "{shape:?}: expected 4 dimensions ({})",
                    if field == "weight" {
                        "OIHW: out channels, in channels / groups, kh, kw"
                    } else {
                        "NCHW"
                    }
                ),
            )
        })?;
        let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements != Some(values.len()) {
            return Err(Error::invalid(
                format!("{field}.data"),
                format!("{} values for shape {shape:?}", values.len()),
            ));
        }
        Ok(TensorParts {
            dtype,
            shape,
            data: to_i32_data(&format!("{field}.data"), values)?,
            scales,
            zero_points,
            axis,
        })
    }
}

/// A whole layer as plain values. Optional fields take the defaults of a layer file.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerParts {
    pub name: Option<String>,
    pub input: TensorParts,
    pub weight: TensorParts,
    /// `(dtype, values)`: `float32` (real units) or `int32` (scale `s_in * s_w`).
    pub bias: Option<(String, Vec<f64>)>,
    pub output_dtype: String,
    pub output_scale: Option<f64>,
    pub output_zero_point: Option<i64>,
    pub output_clamp: Option<[i64; 2]>,
    /// A TFLite fused activation (`linear`, `relu`, `relu_n1_to_1`, `relu6`).
    pub activation: Option<String>,
    pub kernel: Option<[usize; 2]>,
    pub stride: Option<[usize; 2]>,
    /// `[ph, pw]` or `[top, left, bottom, right]`.
    pub padding: Option<Vec<i64>>,
    /// `same` or `valid` (TFLite); exclusive with `padding`.
    pub padding_mode: Option<String>,
    pub dilation: Option<[usize; 2]>,
    pub groups: Option<usize>,
    pub relu: Option<bool>,
    /// The ISA the layer's recorded results come from.
    pub isa: Option<String>,
}

impl LayerParts {
    /// Validates the parts and builds the layer; errors name the field (`input.scale`, ...).
    pub fn build(self) -> Result<ConvLayer> {
        let LayerParts {
            input, mut weight, ..
        } = self;
        if input.scales.as_ref().is_some_and(|(_, many)| *many) || input.zero_points.1 {
            return Err(Error::invalid(
                "input",
                "takes one scale and one zero point (per-tensor)",
            ));
        }
        let per_channel = match weight_axis(weight.axis)? {
            Some(p) => p,
            None => {
                weight
                    .scales
                    .as_ref()
                    .is_some_and(|(v, many)| *many && v.len() > 1)
                    || (weight.zero_points.1 && weight.zero_points.0.len() > 1)
            }
        };
        let oc = weight.shape[0];
        if per_channel && !weight.zero_points.1 {
            // One zero point given for per-channel scales: it applies to every channel.
            weight.zero_points.0 = vec![weight.zero_points.0.first().copied().unwrap_or(0); oc];
        }
        let padding_mode = match self.padding_mode.as_deref() {
            None => None,
            Some("same" | "SAME") => Some(PaddingMode::Same),
            Some("valid" | "VALID") => Some(PaddingMode::Valid),
            Some(other) => {
                return Err(Error::invalid(
                    "conv.padding_mode",
                    format!("`{other}` (expected same or valid)"),
                ));
            }
        };
        let stride = self.stride.unwrap_or([1, 1]);
        let dilation = self.dilation.unwrap_or([1, 1]);
        let padding = match (&self.padding, padding_mode) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "conv.padding_mode",
                    "give either padding amounts or a padding mode, not both",
                ));
            }
            (Some(p), None) => Padding::from_list(p).map_err(|e| e.within("conv"))?,
            (None, Some(mode)) => {
                let [_, _, kh, kw] = weight.shape;
                let [_, _, h, w] = input.shape;
                let dim = |size, k, s, d, name: &str| {
                    mode.padding(size, k, s, d).ok_or_else(|| {
                        Error::invalid(
                            "conv.padding_mode",
                            format!("valid: the kernel does not fit the input {name}"),
                        )
                    })
                };
                let (top, bottom) = dim(h, kh, stride[0], dilation[0], "height")?;
                let (left, right) = dim(w, kw, stride[1], dilation[1], "width")?;
                Padding {
                    top,
                    left,
                    bottom,
                    right,
                }
            }
            (None, None) => Padding::default(),
        };
        let conv = ConvParams {
            kernel: self.kernel,
            stride,
            dilation,
            padding,
            groups: self.groups.unwrap_or(1),
        };
        let bias = match self.bias {
            None => None,
            Some((dtype, values)) => Some(bias(&dtype, &values)?),
        };
        let output = output_quant(
            &self.output_dtype,
            self.output_scale,
            self.output_zero_point,
            self.output_clamp,
        )?;
        let input_zero_point = int32(
            "input.zero_point",
            input.zero_points.0.first().copied().unwrap_or(0),
        )?;
        let weight_zero_points = weight
            .zero_points
            .0
            .iter()
            .enumerate()
            .map(|(i, &z)| int32(&format!("weight.zero_point[{i}]"), z))
            .collect::<Result<Vec<_>>>()?;
        let mut layer = ConvLayer::new(
            self.name.unwrap_or_else(|| "layer".to_string()),
            conv,
            Activations {
                dtype: input.dtype,
                shape: input.shape,
                data: input.data,
                scale: input.scales.and_then(|(v, _)| v.first().copied()),
                zero_point: input_zero_point,
            },
            Weights {
                dtype: weight.dtype,
                shape: weight.shape,
                data: weight.data,
                quant: WeightQuant {
                    scales: weight.scales.map(|(v, _)| v),
                    zero_points: weight_zero_points,
                    per_channel,
                },
            },
            bias,
            output,
            self.relu.unwrap_or(false),
        )?;
        layer.padding_mode = padding_mode;
        if let Some(a) = &self.activation {
            layer.activation = Some(a.parse().map_err(|e: Error| e.within("output"))?);
            if layer.output.scale.is_none()
                && layer.activation != Some(crate::layer::Activation::None)
            {
                return Err(Error::invalid(
                    "output.activation",
                    "an int32 (raw accumulator) output takes no activation",
                ));
            }
            let named = layer.activation != Some(crate::layer::Activation::None);
            if let (None, Some(scale), true) = (layer.output.clamp, layer.output.scale, named) {
                // The quantized range TFLite computes, for engines that read `clamp`.
                let (lo, hi) =
                    crate::engines::tflite_reference::activation_range(&layer, scale as f32);
                layer.output.clamp = Some([lo, hi]);
            }
        }
        if let Some(isa) = &self.isa {
            layer.recorded_isa = Some(isa.parse().map_err(|e: Error| e.within("source"))?);
        }
        Ok(layer)
    }
}
