//! The standard benchmark suite and its timing harness.
//!
//! The timed region is what a user calls per inference: a quantized NCHW input in, the quantized
//! NCHW output out, with the weights packed once beforehand (as the peers prepack theirs).

use std::time::{Duration, Instant};

use crate::dtype::DType;
use crate::engines::{self, EngineKind, RunOptions};
use crate::error::{Error, Result};
use crate::fastconv::output::{ExactRequantized, Requantized};
use crate::fastconv::{ConvPlan, Reduction};
use crate::geometry::Padding;
use crate::kernels::KernelIsa;
use crate::layer::{Activations, Bias, ConvLayer, ConvParams, OutputQuant, Weights};
use crate::quant::WeightQuant;

/// One layer of the suite (batch 1, NCHW, square kernels, symmetric padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuiteLayer {
    pub name: &'static str,
    pub channels: usize,
    pub size: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

const fn layer(
    name: &'static str,
    channels: usize,
    size: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    groups: usize,
) -> SuiteLayer {
    SuiteLayer {
        name,
        channels,
        size,
        out_channels,
        kernel,
        stride,
        pad,
        groups,
    }
}

/// The standard suite.
pub const SUITE: [SuiteLayer; 12] = [
    layer("seed_5x5_1to1", 1, 5, 1, 5, 1, 0, 1),
    layer("lenet_5x5_1to6_32", 1, 32, 6, 5, 1, 0, 1),
    layer("r50_conv1_7x7s2", 3, 224, 64, 7, 2, 3, 1),
    layer("r18_3x3_64_56", 64, 56, 64, 3, 1, 1, 1),
    layer("r18_3x3_128_28", 128, 28, 128, 3, 1, 1, 1),
    layer("r18_3x3_256_14", 256, 14, 256, 3, 1, 1, 1),
    layer("r18_3x3_512_7", 512, 7, 512, 3, 1, 1, 1),
    layer("r50_1x1_256to64_56", 256, 56, 64, 1, 1, 0, 1),
    layer("r50_1x1_1024to256_14", 1024, 14, 256, 1, 1, 0, 1),
    layer("mv2_dw3x3_144_56", 144, 56, 144, 3, 1, 1, 144),
    layer("mv2_dw3x3s2_96_112", 96, 112, 96, 3, 2, 1, 96),
    layer("mv2_pw_32to192_112", 32, 112, 192, 1, 1, 0, 1),
];

/// A deterministic generator for benchmark data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

impl SuiteLayer {
    /// Looks a suite layer up by name.
    pub fn by_name(name: &str) -> Result<SuiteLayer> {
        SUITE.iter().copied().find(|l| l.name == name).ok_or_else(|| {
            let names: Vec<&str> = SUITE.iter().map(|l| l.name).collect();
            Error::invalid(
                "--layers",
                format!("unknown layer `{name}` (expected one of {})", names.join(", ")),
            )
        })
    }

    /// The layer with deterministic data: uint8 activations over the full range (zero point
    /// 128), int8 weights with per-channel scales and zero point 0, a float32 bias, uint8 output
    /// (the realistic PyTorch / ONNX Runtime configuration).
    pub fn build(&self) -> ConvLayer {
        let mut rng = Lcg(0x5eed ^ self.name.len() as u64);
        let cg = self.channels / self.groups;
        let input = (0..self.channels * self.size * self.size)
            .map(|_| (rng.next() % 256) as i32)
            .collect();
        let weight_len = self.out_channels * cg * self.kernel * self.kernel;
        let weight = (0..weight_len).map(|_| (rng.next() % 256) as i32 - 128).collect();
        let scales = (0..self.out_channels)
            .map(|oc| (0.002 + 0.0001 * (oc % 7) as f32) as f64)
            .collect();
        let bias = (0..self.out_channels)
            .map(|oc| (oc % 5) as f32 * 0.25 - 0.5)
            .collect();
        ConvLayer::new(
            self.name,
            ConvParams {
                kernel: None,
                stride: [self.stride; 2],
                dilation: [1, 1],
                padding: Padding::symmetric(self.pad, self.pad),
                groups: self.groups,
            },
            Activations {
                dtype: DType::Uint8,
                shape: [1, self.channels, self.size, self.size],
                data: input,
                scale: Some(0.02),
                zero_point: 128,
            },
            Weights {
                dtype: DType::Int8,
                shape: [self.out_channels, cg, self.kernel, self.kernel],
                data: weight,
                quant: WeightQuant::per_channel(scales, vec![0; self.out_channels]),
            },
            Some(Bias::Float32(bias)),
            OutputQuant {
                dtype: DType::Uint8,
                // The accumulator's standard deviation is about 74 * 74 * sqrt(K) (uniform
                // activations and weights): three of them span the output's 128 steps each side.
                scale: Some(0.02 * 0.002 * ((cg * self.kernel * self.kernel) as f64).sqrt() * 128.0),
                zero_point: 128,
                clamp: None,
            },
            false,
        )
        .expect("suite layers are valid")
    }
}

/// One timing.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub layer: String,
    pub engine: EngineKind,
    pub threads: usize,
    pub kernel: String,
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    /// 2 x MACs / median time, in 10^9 operations per second.
    pub gops: f64,
}

/// Times `f` until at least `budget` has passed and at least 5 runs were made (after one
/// warm-up run); returns the sorted run times.
fn time_runs(budget: Duration, mut f: impl FnMut()) -> Vec<Duration> {
    f();
    let start = Instant::now();
    let mut runs = Vec::new();
    while runs.len() < 5 || (start.elapsed() < budget && runs.len() < 10_000) {
        let t = Instant::now();
        f();
        runs.push(t.elapsed());
    }
    runs.sort();
    runs
}

/// Times `engine` on `layer` with `threads` threads and the `kernel` set: input as uint8 NCHW,
/// output as uint8 NCHW, weights prepared beforehand.
pub fn time_engine(
    layer: &ConvLayer,
    engine: EngineKind,
    options: &RunOptions,
    threads: usize,
    kernel: KernelIsa,
    budget: Duration,
) -> Result<Timing> {
    let input: Vec<u8> = layer.input.data.iter().map(|&v| v as u8).collect();
    let mut out = vec![0u8; layer.output_len()];
    let isa = options.resolve_isa(layer);
    let scales = layer.scales(engine.name())?;
    let macs = layer.geometry.macs() as f64;
    let (runs, route) = match engine {
        EngineKind::Exact => {
            let plan = plan(layer, Reduction::Exact, kernel, threads)?;
            let r = engines::exact::requantizer(layer)?;
            let stage = ExactRequantized::<u8>::new(&r);
            let runs = time_runs(budget, || plan.run(&input, &mut out, &stage));
            (runs, plan.route())
        }
        EngineKind::Qnnpack => {
            let plan = plan(layer, Reduction::Exact, kernel, threads)?;
            let r = engines::qnnpack::requantizer(layer, scales.input, scales.output)?;
            let stage = Requantized::<_, u8>::new(&r);
            let runs = time_runs(budget, || plan.run(&input, &mut out, &stage));
            (runs, plan.route())
        }
        EngineKind::Fbgemm => {
            let path = engines::fbgemm::FbgemmPath::select(&layer.geometry, isa);
            let reduction = if path.saturates(isa) {
                Reduction::PairSaturating
            } else {
                Reduction::Exact
            };
            let plan = plan(layer, reduction, kernel, threads)?;
            let r = engines::fbgemm::requantizer(layer, path, scales.input, scales.output);
            let stage = Requantized::<_, u8>::new(&r);
            let runs = time_runs(budget, || plan.run(&input, &mut out, &stage));
            (runs, plan.route())
        }
        other => {
            return Err(Error::invalid(
                "--engines",
                format!("the benchmark times exact, qnnpack and fbgemm, not {other}"),
            ));
        }
    };
    let median = runs[runs.len() / 2].as_secs_f64();
    Ok(Timing {
        layer: layer.name.clone(),
        engine,
        threads,
        kernel: route,
        runs: runs.len(),
        median_ms: median * 1e3,
        min_ms: runs[0].as_secs_f64() * 1e3,
        gops: 2.0 * macs / median / 1e9,
    })
}

fn plan(layer: &ConvLayer, reduction: Reduction, kernel: KernelIsa, threads: usize) -> Result<ConvPlan> {
    ConvPlan::new(layer, reduction, kernel, threads)?.ok_or_else(|| {
        Error::refused(
            "bench",
            "the fast kernels cannot compute this layer exactly (int32 may overflow)",
        )
    })
}
