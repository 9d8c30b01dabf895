//! Every engine model computes the same output with the fast kernels (every kernel set this CPU
//! has, 1 and 2 threads) as with the reference loop: values, accumulators, route, warnings and
//! refusals. Random layers cover FBGEMM's routes (im2col, pointwise, groupwise, depthwise), ONNX
//! Runtime's (GEMM, depthwise, ConvInteger), every type combination, every modelled ISA
//! (saturating and exact), and reductions too long for the fast kernels' int32 (the fallback).

use proptest::prelude::*;
use qconv::engines::{self, EngineKind, EngineOutput, RunOptions};
use qconv::fastconv::Reduction;
use qconv::kernels::KernelIsa;
use qconv::{
    Activations, Bias, ConvLayer, ConvParams, DType, Isa, OutputQuant, Padding, WeightQuant,
    Weights,
};

/// A small deterministic generator: everything about a layer follows from one seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// Uniform in `lo ..= hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as i64, hi as i64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.size(0, items.len() - 1)]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
}

/// Layer shapes aimed at each FBGEMM route (the other engines' routes follow).
#[derive(Clone, Copy, Debug)]
enum Family {
    General,
    Depthwise,
    Groupwise,
    Pointwise,
}

/// A random layer of `family`. Half are PyTorch layers (uint8 x int8 -> uint8, float bias,
/// symmetric padding, sometimes ReLU), half ONNX layers (any type combination, int32 bias, uint8,
/// int8 or raw int32 output).
fn random_layer(family: Family, seed: u64) -> ConvLayer {
    let mut rng = Lcg(seed);
    let pytorch = rng.chance(50);
    let (n, cg, groups, ocg, hw, kernel, stride, dilation, pad) = match family {
        Family::General => {
            let k = [rng.size(1, 4), rng.size(1, 4)];
            let p = [
                rng.size(0, 2),
                rng.size(0, 2),
                rng.size(0, 2),
                rng.size(0, 2),
            ];
            (
                rng.size(1, 2),
                rng.size(1, 12),
                rng.size(1, 3),
                rng.size(1, 12),
                [rng.size(1, 9), rng.size(1, 9)],
                k,
                [rng.size(1, 2), rng.size(1, 2)],
                [rng.size(1, 2), rng.size(1, 2)],
                if pytorch || rng.chance(50) {
                    [p[0], p[1], p[0], p[1]]
                } else {
                    p
                },
            )
        }
        Family::Depthwise => {
            let k = rng.pick(&[3, 5, 7]);
            let p = (k - 1) / 2;
            (
                1,
                1,
                rng.pick(&[8, 16]),
                rng.size(1, 2),
                [rng.size(k, 12), rng.size(k, 12)],
                [k, k],
                [rng.size(1, 2); 2],
                [1, 1],
                [p; 4],
            )
        }
        Family::Groupwise => {
            let c = rng.pick(&[2, 4, 8, 16]);
            (
                1,
                c,
                rng.size(1, 8),
                c,
                [rng.size(3, 10), rng.size(3, 10)],
                [3, 3],
                [rng.size(1, 2); 2],
                [1, 1],
                [1; 4],
            )
        }
        Family::Pointwise => (
            rng.size(1, 2),
            rng.size(1, 40),
            1,
            rng.size(1, 40),
            [rng.size(1, 8), rng.size(1, 8)],
            [1, 1],
            [1, 1],
            [1, 1],
            [0; 4],
        ),
    };
    // Keep the output non-empty.
    let hw = [0, 1].map(|a| {
        let need = dilation[a] * (kernel[a] - 1) + 1;
        hw[a].max(need.saturating_sub(pad[a] + pad[a + 2]))
    });
    let (c, oc) = (cg * groups, ocg * groups);
    let int32_output = !pytorch && rng.chance(25);
    let x_dtype = if pytorch || rng.chance(60) {
        DType::Uint8
    } else {
        DType::Int8
    };
    let w_dtype = if pytorch || rng.chance(60) {
        DType::Int8
    } else {
        DType::Uint8
    };
    let out_dtype = match () {
        _ if int32_output => DType::Int32,
        _ if pytorch || rng.chance(50) => DType::Uint8,
        _ => DType::Int8,
    };
    let full = |rng: &mut Lcg, d: DType| rng.range(d.min(), d.max()) as i32;
    let input = (0..n * c * hw[0] * hw[1])
        .map(|_| full(&mut rng, x_dtype))
        .collect();
    let weight = (0..oc * cg * kernel[0] * kernel[1])
        .map(|_| full(&mut rng, w_dtype))
        .collect();
    let input_zero_point = full(&mut rng, x_dtype);
    let per_channel = rng.chance(50);
    let symmetric = rng.chance(35);
    let zero_points: Vec<i32> = (0..if per_channel { oc } else { 1 })
        .map(|_| {
            if symmetric {
                0
            } else {
                full(&mut rng, w_dtype)
            }
        })
        .collect();
    let input_scale = 0.001 + 0.05 * rng.unit();
    let weight_scales: Vec<f64> = (0..zero_points.len())
        .map(|_| 0.0005 + 0.01 * rng.unit())
        .collect();
    let k_len = (cg * kernel[0] * kernel[1]) as f64;
    let output_scale =
        input_scale * weight_scales[0] * k_len.sqrt() * (200.0 + 4000.0 * rng.unit());
    let bias = match () {
        _ if int32_output || rng.chance(30) => None,
        _ if pytorch => Some(Bias::Float32(
            (0..oc).map(|_| (rng.unit() as f32 - 0.5) * 4.0).collect(),
        )),
        _ => Some(Bias::Int32(
            (0..oc).map(|_| rng.range(-50_000, 50_000) as i32).collect(),
        )),
    };
    let quant = match (int32_output, per_channel) {
        (true, _) => WeightQuant {
            scales: None,
            zero_points,
            per_channel,
        },
        (false, true) => WeightQuant::per_channel(weight_scales, zero_points),
        (false, false) => WeightQuant::per_tensor(weight_scales[0], zero_points[0]),
    };
    ConvLayer::new(
        format!("{family:?}-{seed}"),
        ConvParams {
            kernel: None,
            stride,
            dilation,
            padding: Padding {
                top: pad[0],
                left: pad[1],
                bottom: pad[2],
                right: pad[3],
            },
            groups,
        },
        Activations {
            dtype: x_dtype,
            shape: [n, c, hw[0], hw[1]],
            data: input,
            scale: (!int32_output).then_some(input_scale),
            zero_point: input_zero_point,
        },
        Weights {
            dtype: w_dtype,
            shape: [oc, cg, kernel[0], kernel[1]],
            data: weight,
            quant,
        },
        bias,
        OutputQuant {
            dtype: out_dtype,
            scale: (!int32_output).then_some(output_scale),
            zero_point: if int32_output {
                0
            } else {
                full(&mut rng, out_dtype)
            },
            clamp: None,
        },
        pytorch && rng.chance(30),
    )
    .expect("random layers are valid")
}

/// Asserts two runs of the same engine are identical (or refuse alike).
fn assert_same(
    fast: &qconv::Result<EngineOutput>,
    reference: &qconv::Result<EngineOutput>,
    what: &str,
) -> Result<(), TestCaseError> {
    match (fast, reference) {
        (Ok(f), Ok(r)) => {
            prop_assert_eq!(f.engine, r.engine, "{}", what);
            prop_assert_eq!(f.isa, r.isa, "{}", what);
            prop_assert_eq!(&f.path, &r.path, "{}", what);
            prop_assert_eq!(f.dtype, r.dtype, "{}", what);
            prop_assert_eq!(f.shape, r.shape, "{}", what);
            prop_assert_eq!(&f.accumulators, &r.accumulators, "{}: accumulators", what);
            prop_assert_eq!(&f.values, &r.values, "{}: values", what);
            prop_assert_eq!(&f.warnings, &r.warnings, "{}", what);
        }
        (Err(f), Err(r)) => prop_assert_eq!(f.to_string(), r.to_string(), "{}", what),
        (f, r) => prop_assert!(
            false,
            "{}: fast {:?} but reference {:?}",
            what,
            f.as_ref().map(|o| &o.path),
            r.as_ref().map(|o| &o.path)
        ),
    }
    Ok(())
}

const ISAS: [Isa; 4] = [Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Avx512Vnni];

/// Every engine on every modelled ISA: fast (each kernel set, 1 and 2 threads) against reference.
fn check_every_engine(layer: &ConvLayer) -> Result<usize, TestCaseError> {
    let mut accepted = 0;
    for isa in ISAS {
        let reference = RunOptions {
            isa: Some(isa),
            reference: true,
            ..RunOptions::default()
        };
        for engine in EngineKind::ALL {
            if isa != Isa::Avx2 && !engine.depends_on_isa() {
                continue;
            }
            let expected = engines::run(engine, layer, &reference);
            accepted += expected.is_ok() as usize;
            for kernel in KernelIsa::available() {
                for threads in [1, 2] {
                    let options = RunOptions {
                        isa: Some(isa),
                        threads: Some(threads),
                        kernel: Some(kernel),
                        reference: false,
                        accumulator: None,
                    };
                    let what = format!("{} {engine} on {isa}, {kernel} x{threads}", layer.name);
                    assert_same(&engines::run(engine, layer, &options), &expected, &what)?;
                }
            }
        }
    }
    Ok(accepted)
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::General),
        Just(Family::Depthwise),
        Just(Family::Groupwise),
        Just(Family::Pointwise),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn engines_agree_with_the_reference_loop(family in family(), seed in any::<u64>()) {
        let layer = random_layer(family, seed);
        // The fast path is really taken: these layers are small enough for an exact int32 plan,
        // and PyTorch's layers are u8 x s8, which the pair kernels take.
        let fast = RunOptions { threads: Some(1), ..RunOptions::default() };
        prop_assert!(fast.plan(&layer, Reduction::Exact).unwrap().is_some());
        let u8s8 = layer.input.dtype == DType::Uint8 && layer.weight.dtype == DType::Int8;
        prop_assert_eq!(fast.plan(&layer, Reduction::PairSaturating).unwrap().is_some(), u8s8);
        let accepted = check_every_engine(&layer)?;
        // Every layer is accepted by at least the exact engine and one ISA-dependent model.
        prop_assert!(accepted >= 2, "{}: {} runs accepted", layer.name, accepted);
    }
}

/// A layer whose exact accumulators leave int32 in output channel 0: 36000 products of
/// 255 * -255 each (channel 1's stay inside).
fn overflowing_layer(output: DType) -> ConvLayer {
    let k = 36_000;
    let integer = output == DType::Int32;
    ConvLayer::new(
        "overflow",
        ConvParams::default(),
        Activations {
            dtype: DType::Uint8,
            shape: [1, k, 1, 2],
            data: vec![255; 2 * k],
            scale: (!integer).then_some(0.01),
            zero_point: 0,
        },
        Weights {
            dtype: DType::Int8,
            shape: [2, k, 1, 1],
            data: (0..2 * k).map(|i| if i < k { -128 } else { 5 }).collect(),
            quant: if integer {
                WeightQuant {
                    scales: None,
                    zero_points: vec![127],
                    per_channel: false,
                }
            } else {
                WeightQuant::per_tensor(0.001, 127)
            },
        },
        None,
        OutputQuant {
            dtype: output,
            scale: (!integer).then_some(1000.0),
            zero_point: 0,
            clamp: None,
        },
        false,
    )
    .unwrap()
}

#[test]
fn reductions_past_int32_fall_back_to_the_reference_loop() {
    for output in [DType::Uint8, DType::Int32] {
        let layer = overflowing_layer(output);
        let options = RunOptions::default();
        assert!(
            options.plan(&layer, Reduction::Exact).unwrap().is_none(),
            "no exact int32 plan"
        );
        // The exact accumulator is -255 * 255 * 36000 at the first pixel: past int32.
        let exact = engines::exact::accumulators(&layer, &options).unwrap();
        assert_eq!(exact[0], -255 * 255 * 36_000);
        for isa in ISAS {
            let reference = RunOptions {
                isa: Some(isa),
                reference: true,
                ..RunOptions::default()
            };
            for engine in EngineKind::ALL {
                let fast = RunOptions {
                    isa: Some(isa),
                    threads: Some(2),
                    ..RunOptions::default()
                };
                let expected = engines::run(engine, &layer, &reference);
                let got = engines::run(engine, &layer, &fast);
                assert_same(&got, &expected, &format!("{engine} on {isa}, {output}"))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        // ONNX's int32 arithmetic wraps; the wrapped value is what it returns.
        if output == DType::Int32 {
            let onnx = engines::run(EngineKind::Onnx, &layer, &options).unwrap();
            assert_eq!(onnx.values[0], (-255i64 * 255 * 36_000) as i32);
        }
    }
}

#[test]
fn thread_count_zero_is_an_error() {
    let layer = random_layer(Family::General, 1);
    let options = RunOptions {
        threads: Some(0),
        ..RunOptions::default()
    };
    for engine in EngineKind::ALL {
        let err = engines::run(engine, &layer, &options)
            .err()
            .unwrap_or_else(|| panic!("{engine} accepted 0 threads"));
        assert!(matches!(err, qconv::Error::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("threads"), "{err}");
    }
}

#[test]
fn the_reference_option_never_plans() {
    let layer = random_layer(Family::Pointwise, 2);
    let options = RunOptions {
        reference: true,
        ..RunOptions::default()
    };
    assert!(options.plan(&layer, Reduction::Exact).unwrap().is_none());
    let options = RunOptions::default();
    assert!(options.plan(&layer, Reduction::Exact).unwrap().is_some());
}

#[test]
fn small_layers_run_on_one_thread_unless_told_otherwise() {
    let layer = random_layer(Family::Pointwise, 3);
    assert!(layer.geometry.macs() < 1 << 20);
    assert_eq!(RunOptions::default().resolve_threads(&layer).unwrap(), 1);
    let two = RunOptions {
        threads: Some(2),
        ..RunOptions::default()
    };
    assert_eq!(two.resolve_threads(&layer).unwrap(), 2);
}
