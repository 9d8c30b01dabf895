//! qconv: exact quantized 2-D convolution, and bit-exact models of the engines that compute it
//! (PyTorch's fbgemm / x86 / qnnpack, the float path), so that their differences can be reproduced
//! and explained.
//!
//! The pieces: [`geometry`] (shapes and the im2col order), [`quant`] (quantization parameters),
//! [`layer`] (a validated layer), [`accumulate`] and [`requant`] (the two halves of every engine),
//! [`engines`] (one small module per engine), [`io`] (layer files, golden cases, npy, csv, ONNX
//! models) and [`model_check`] (the saturation audit of a whole ONNX model).

pub mod accumulate;
pub mod bench;
pub mod check;
pub mod compare;
pub mod conformance;
pub mod dtype;
pub mod engines;
pub mod error;
pub mod explain;
pub mod fastconv;
pub mod geometry;
pub mod io;
pub mod isa;
pub mod kernels;
pub mod layer;
pub mod model_check;
pub mod numerics;
pub mod quant;
pub mod requant;
pub mod vectors;

pub use dtype::DType;
pub use engines::{EngineKind, EngineOutput, RunOptions};
pub use error::{Error, Result};
pub use geometry::{ConvGeometry, Padding};
pub use isa::Isa;
pub use layer::{Activations, Bias, ConvLayer, ConvParams, OutputQuant, Weights};
pub use quant::WeightQuant;
