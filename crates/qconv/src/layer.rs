//! A quantized convolution layer: geometry, quantized tensors and their parameters.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::{ConvGeometry, Padding, check_elements};
use crate::isa::Isa;
use crate::quant::{WeightQuant, check_scale, check_zero_point};

/// The quantized input activations, NCHW, per-tensor parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Activations {
    pub dtype: DType,
    pub shape: [usize; 4],
    /// Elements in NCHW row-major order.
    pub data: Vec<i32>,
    /// `None` for operators without an input scale (ONNX ConvInteger).
    pub scale: Option<f64>,
    pub zero_point: i32,
}

/// The quantized weight, OIHW (I = input channels per group).
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    pub dtype: DType,
    pub shape: [usize; 4],
    /// Elements in OIHW row-major order.
    pub data: Vec<i32>,
    pub quant: WeightQuant,
}

/// The bias, one value per output channel.
#[derive(Clone, Debug, PartialEq)]
pub enum Bias {
    /// Real-valued bias in float32, as PyTorch takes it.
    Float32(Vec<f32>),
    /// Bias already quantized with scale `input.scale * weight.scale[oc]` and zero point 0, as
    /// ONNX and TFLite take it.
    Int32(Vec<i32>),
}

impl Bias {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Bias::Float32(v) => v.len(),
            Bias::Int32(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The real value of channel `oc`'s bias, exactly, as an `f64` (float32 and int32 values
    /// convert exactly). `Int32` bias is scaled by `input_scale * weight_scale` and is therefore
    /// *not* exact; use it only for display.
    pub fn real_value(&self, oc: usize, input_scale: f64, weight_scale: f64) -> f64 {
        match self {
            Bias::Float32(v) => v[oc] as f64,
            Bias::Int32(v) => v[oc] as f64 * input_scale * weight_scale,
        }
    }
}

/// Quantization of the output.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputQuant {
    pub dtype: DType,
    /// `None` for operators with a raw int32 output (ONNX ConvInteger).
    pub scale: Option<f64>,
    pub zero_point: i32,
    /// Quantized clamp range of a fused activation, when the layer specifies one explicitly
    /// (TFLite). `relu` on the layer is the PyTorch form.
    pub clamp: Option<[i32; 2]>,
}

/// Convolution hyper-parameters as a layer file gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    /// `[kh, kw]`; when given, must agree with the weight's shape.
    pub kernel: Option<[usize; 2]>,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub padding: Padding,
    pub groups: usize,
}

impl Default for ConvParams {
    fn default() -> Self {
        ConvParams {
            kernel: None,
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::default(),
            groups: 1,
        }
    }
}

/// A validated quantized convolution layer. Construct it with [`ConvLayer::new`], which checks
/// every parameter; all engines may then rely on the invariants.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLayer {
    /// A name for reports (a golden case id, a layer file name).
    pub name: String,
    pub geometry: ConvGeometry,
    pub input: Activations,
    pub weight: Weights,
    pub bias: Option<Bias>,
    pub output: OutputQuant,
    /// Fused ReLU (PyTorch's `ConvReLU2d`): the output is clamped below at the zero point.
    pub relu: bool,
    /// The ISA the layer's reference numbers were observed on, when recorded (a golden case's
    /// `source.isa`, a layer file's `source.isa`). Engines default to it before the host's.
    pub recorded_isa: Option<Isa>,
    /// The fused activation a TFLite layer names (`None` when the source names none). TFLite
    /// engines derive their output range from it as their runtime does; the other engines use
    /// `output.clamp` and `relu`.
    pub activation: Option<Activation>,
    /// The padding mode a TFLite layer names (`SAME` / `VALID`), when the source records it;
    /// `padding` holds the explicit amounts either way.
    pub padding_mode: Option<PaddingMode>,
}

/// TFLite's padding modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaddingMode {
    /// Output size `ceil(in / stride)`; the padding needed for it, the odd pixel at the end.
    Same,
    /// No padding; output size `ceil((in - effective_kernel + 1) / stride)`.
    Valid,
}

impl PaddingMode {
    /// The name in layer files and reports.
    pub fn name(self) -> &'static str {
        match self {
            PaddingMode::Same => "same",
            PaddingMode::Valid => "valid",
        }
    }

    /// TFLite's `ComputePaddingHeightWidth` for one spatial dimension: `(before, after)`
    /// padding, or `None` when the (dilated) kernel does not fit a VALID input.
    pub fn padding(
        self,
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
    ) -> Option<(usize, usize)> {
        let effective = (kernel.max(1) - 1) * dilation + 1;
        match self {
            PaddingMode::Valid => (input >= effective).then_some((0, 0)),
            PaddingMode::Same => {
                let out = input.div_ceil(stride.max(1));
                let total = ((out.max(1) - 1) * stride + effective).saturating_sub(input);
                Some((total / 2, total - total / 2))
            }
        }
    }
}

/// A TFLite fused activation (`ActivationFunctionType` of the schema, the kinds a quantized conv
/// can carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `NONE` (`linear`).
    None,
    /// `RELU`: real range `[0, inf)`.
    Relu,
    /// `RELU_N1_TO_1`: real range `[-1, 1]`.
    ReluN1To1,
    /// `RELU6`: real range `[0, 6]`.
    Relu6,
}

impl Activation {
    /// The name in golden cases and layer files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "linear",
            Activation::Relu => "relu",
            Activation::ReluN1To1 => "relu_n1_to_1",
            Activation::Relu6 => "relu6",
        }
    }

    /// The real bounds of the activation (`None` = unbounded on that side).
    pub fn real_bounds(self) -> (Option<f32>, Option<f32>) {
        match self {
            Activation::None => (None, None),
            Activation::Relu => (Some(0.0), None),
            Activation::ReluN1To1 => (Some(-1.0), Some(1.0)),
            Activation::Relu6 => (Some(0.0), Some(6.0)),
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "linear" | "none" => Ok(Activation::None),
            "relu" => Ok(Activation::Relu),
            "relu_n1_to_1" | "relu1" => Ok(Activation::ReluN1To1),
            "relu6" => Ok(Activation::Relu6),
            _ => Err(Error::invalid(
                "activation",
                format!("unknown activation `{s}` (expected linear, relu, relu_n1_to_1 or relu6)"),
            )),
        }
    }
}

impl ConvLayer {
    /// Builds and validates a layer. Errors name the offending field.
    pub fn new(
        name: impl Into<String>,
        conv: ConvParams,
        input: Activations,
        weight: Weights,
        bias: Option<Bias>,
        output: OutputQuant,
        relu: bool,
    ) -> Result<Self> {
        let [n, c, h, w] = input.shape;
        let [oc, cg, kh, kw] = weight.shape;
        if let Some(kernel) = conv.kernel
            && kernel != [kh, kw]
        {
            return Err(Error::invalid(
                "conv.kernel",
                format!(
                    "{kernel:?} does not match the weight's shape {:?} (kernel = last two dims)",
                    weight.shape
                ),
            ));
        }
        if conv.groups == 0 {
            return Err(Error::invalid("conv.groups", "must be > 0"));
        }
        if c % conv.groups == 0 && cg != c / conv.groups {
            return Err(Error::invalid(
                "weight.shape",
                format!(
                    "dimension 1 is {cg}, expected input channels / groups = {c} / {} = {}",
                    conv.groups,
                    c / conv.groups
                ),
            ));
        }
        let geometry = ConvGeometry {
            batch: n,
            in_channels: c,
            in_h: h,
            in_w: w,
            out_channels: oc,
            kernel: [kh, kw],
            stride: conv.stride,
            dilation: conv.dilation,
            padding: conv.padding,
            groups: conv.groups,
        };
        geometry.validate()?;

        let input_len = check_elements("input.shape", &input.shape)?;
        if input.data.len() != input_len {
            return Err(Error::invalid(
                "input.data",
                format!(
                    "has {} elements, shape {:?} needs {input_len}",
                    input.data.len(),
                    input.shape
                ),
            ));
        }
        if input.dtype == DType::Int32 {
            return Err(Error::invalid(
                "input.dtype",
                "must be uint8 or int8 (int32 activations are not a quantized conv input)",
            ));
        }
        input.dtype.check_data("input.data", &input.data)?;
        if let Some(s) = input.scale {
            check_scale("input.scale", s)?;
        }
        check_zero_point("input.zero_point", input.zero_point as i64, input.dtype)?;

        let weight_len = check_elements("weight.shape", &weight.shape)?;
        if weight.data.len() != weight_len {
            return Err(Error::invalid(
                "weight.data",
                format!(
                    "has {} elements, shape {:?} needs {weight_len}",
                    weight.data.len(),
                    weight.shape
                ),
            ));
        }
        if weight.dtype == DType::Int32 {
            return Err(Error::invalid("weight.dtype", "must be uint8 or int8"));
        }
        weight.dtype.check_data("weight.data", &weight.data)?;
        weight
            .quant
            .validate(weight.dtype, oc)
            .map_err(|e| e.within("weight"))?;
        if input.scale.is_some() != weight.quant.scales.is_some() {
            return Err(Error::invalid(
                "weight.scale",
                "input and weight must both have scales or both have none",
            ));
        }

        if let Some(bias) = &bias {
            if bias.len() != oc {
                return Err(Error::invalid(
                    "bias.data",
                    format!(
                        "has {} values, expected one per output channel ({oc})",
                        bias.len()
                    ),
                ));
            }
            if let Bias::Float32(v) = bias
                && let Some(i) = v.iter().position(|b| !b.is_finite())
            {
                return Err(Error::invalid(
                    "bias.data",
                    format!("element {i} is {}, expected a finite number", v[i]),
                ));
            }
        }

        match (output.dtype, output.scale) {
            (DType::Int32, Some(_)) => {
                return Err(Error::invalid(
                    "output.scale",
                    "an int32 output is the raw accumulator and takes no scale",
                ));
            }
            (DType::Int32, None) => {
                if input.scale.is_some() {
                    return Err(Error::invalid(
                        "output.dtype",
                        "int32 output (raw accumulator) requires an input without scale",
                    ));
                }
            }
            (_, Some(s)) => check_scale("output.scale", s)?,
            (_, None) => {
                return Err(Error::invalid(
                    "output.scale",
                    "missing (required for uint8 / int8 outputs)",
                ));
            }
        }
        if output.dtype != DType::Int32 && input.scale.is_none() {
            return Err(Error::invalid(
                "input.scale",
                "missing (required for a quantized output)",
            ));
        }
        check_zero_point("output.zero_point", output.zero_point as i64, output.dtype)?;
        if let Some([lo, hi]) = output.clamp {
            check_zero_point("output.clamp[0]", lo as i64, output.dtype)?;
            check_zero_point("output.clamp[1]", hi as i64, output.dtype)?;
            if lo > hi {
                return Err(Error::invalid(
                    "output.clamp",
                    format!("lower bound {lo} is above upper bound {hi}"),
                ));
            }
            if relu && hi < output.zero_point {
                return Err(Error::invalid(
                    "output.clamp",
                    format!(
                        "upper bound {hi} is below the output zero point {}, where a fused ReLU \
                         starts: no output value is left",
                        output.zero_point
                    ),
                ));
            }
        }
        if output.dtype == DType::Int32 && matches!(bias, Some(Bias::Float32(_))) {
            return Err(Error::invalid(
                "bias.dtype",
                "an int32 (raw accumulator) output takes an int32 bias, not float32",
            ));
        }
        if output.dtype == DType::Int32 && (relu || output.clamp.is_some()) {
            return Err(Error::invalid(
                "relu",
                "an int32 (raw accumulator) output takes no activation",
            ));
        }

        Ok(ConvLayer {
            name: name.into(),
            geometry,
            input,
            weight,
            bias,
            output,
            relu,
            recorded_isa: None,
            activation: None,
            padding_mode: None,
        })
    }

    /// A one-line summary: shapes, types, geometry, bias, fused ReLU and output.
    pub fn describe(&self) -> String {
        let l = self;
        let g = &l.geometry;
        let p = g.padding;
        let weight_scheme = if l.weight.quant.per_channel {
            "per-channel"
        } else {
            "per-tensor"
        };
        let output = match l.output.scale {
            Some(s) => format!(
                "{} (scale {s}, zero point {})",
                l.output.dtype, l.output.zero_point
            ),
            None => l.output.dtype.to_string(),
        };
        format!(
            "{name}: input {in_shape:?} {in_dtype}, weight {w_shape:?} {w_dtype} {weight_scheme}, \
             kernel {k:?} stride {s:?} padding [{t},{left},{b},{r}] dilation {d:?} groups {groups}{bias}{relu} \
             -> output {out_shape:?} {output}",
            name = l.name,
            in_shape = l.input.shape,
            in_dtype = l.input.dtype,
            w_shape = l.weight.shape,
            w_dtype = l.weight.dtype,
            k = g.kernel,
            s = g.stride,
            t = p.top,
            left = p.left,
            b = p.bottom,
            r = p.right,
            d = g.dilation,
            groups = g.groups,
            bias = match &l.bias {
                Some(Bias::Float32(_)) => ", float32 bias",
                Some(Bias::Int32(_)) => ", int32 bias",
                None => "",
            },
            relu = {
                let mut extra = String::new();
                if l.relu {
                    extra.push_str(", fused ReLU");
                }
                if let Some(a) = l.activation {
                    extra.push_str(&format!(", activation {}", a.name()));
                }
                if let Some(m) = l.padding_mode {
                    extra.push_str(&format!(", {} padding", m.name().to_uppercase()));
                }
                if let Some([lo, hi]) = l.output.clamp {
                    extra.push_str(&format!(", clamp [{lo}, {hi}]"));
                }
                extra
            },
            out_shape = g.output_shape(),
        )
    }

    /// The same layer on other input values: `data` holds the input's shape (NCHW row-major) in
    /// the input's type.
    pub fn with_input_data(&self, shape: [usize; 4], data: Vec<i32>) -> Result<ConvLayer> {
        if shape != self.input.shape {
            return Err(Error::invalid(
                "input.shape",
                format!(
                    "{shape:?}, but the layer's input has shape {:?}",
                    self.input.shape
                ),
            ));
        }
        if data.len() != self.input.data.len() {
            return Err(Error::invalid(
                "input.data",
                format!(
                    "{} values for shape {shape:?} ({} elements)",
                    data.len(),
                    self.input.data.len()
                ),
            ));
        }
        self.input.dtype.check_data("input.data", &data)?;
        let mut layer = self.clone();
        layer.input.data = data;
        Ok(layer)
    }

    /// The int32 bias of each output channel (ONNX, TFLite), zeros without one. A float bias
    /// is not converted: the engines that take int32 bias refuse it before asking.
    pub fn int32_bias(&self) -> Vec<i32> {
        match &self.bias {
            Some(Bias::Int32(b)) => b.clone(),
            _ => vec![0; self.geometry.out_channels],
        }
    }

    /// Number of output elements.
    pub fn output_len(&self) -> usize {
        self.geometry.output_shape().iter().product()
    }

    /// Whether the output is the raw int32 accumulator (ONNX ConvInteger).
    pub fn is_integer_output(&self) -> bool {
        self.output.dtype == DType::Int32
    }

    /// The layer's quantization parameters that every quantized-output engine needs, or a
    /// refusal naming `engine` when the layer has a raw int32 output.
    pub fn scales(&self, engine: &str) -> Result<LayerScales> {
        match (self.input.scale, self.output.scale) {
            (Some(input), Some(output)) => Ok(LayerScales { input, output }),
            _ => Err(Error::refused(
                engine,
                "the layer has no input/output scales (int32 ConvInteger output)",
            )),
        }
    }

    /// The output's quantized range: the dtype's range, narrowed by an explicit clamp and by a
    /// fused ReLU (whose lower bound is the output zero point).
    pub fn output_range(&self) -> (i32, i32) {
        let (mut lo, mut hi) = (
            self.output.dtype.min() as i32,
            self.output.dtype.max() as i32,
        );
        if let Some([l, h]) = self.output.clamp {
            lo = lo.max(l);
            hi = hi.min(h);
        }
        if self.relu {
            lo = lo.max(self.output.zero_point);
        }
        (lo, hi)
    }
}

/// Input and output scales of a layer with a quantized output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerScales {
    pub input: f64,
    pub output: f64,
}
