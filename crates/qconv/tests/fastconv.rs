//! The fast convolution against the reference loop: every kernel set this CPU has, random
//! geometry (groups, depthwise, stride, dilation, asymmetric padding, batch, channel counts that
//! are not multiples of the vector width, long reductions), every type combination, run twice on
//! one plan (scratch buffers from the first run must not leak into the second), and with 1 and 3
//! threads.

use proptest::prelude::*;
use qconv::accumulate::{ZeroPointCorrectedAccumulator, accumulate};
use qconv::engines::exact;
use qconv::fastconv::{ConvPlan, Reduction};
use qconv::geometry::ReductionOrder;
use qconv::kernels::KernelIsa;
use qconv::{
    Activations, ConvLayer, ConvParams, DType, OutputQuant, Padding, WeightQuant, Weights,
};

#[derive(Debug, Clone)]
struct Spec {
    n: usize,
    cg: usize,
    groups: usize,
    ocg: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 4],
    x_dtype: DType,
    w_dtype: DType,
    per_channel: bool,
    seed: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    let dtype = prop_oneof![Just(DType::Uint8), Just(DType::Int8)];
    (
        (1usize..=2, 1usize..=19, 1usize..=4, 1usize..=37),
        (
            [1usize..=9, 1usize..=9],
            [1usize..=4, 1usize..=4],
            [1usize..=2, 1usize..=2],
            [1usize..=2, 1usize..=2],
        ),
        [0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2],
        (dtype.clone(), dtype, any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                (n, cg, groups, ocg),
                (hw, kernel, stride, dilation),
                pad,
                (x_dtype, w_dtype, per_channel, seed),
            )| Spec {
                n,
                cg,
                groups,
                ocg,
                hw,
                kernel,
                stride,
                dilation,
                pad,
                x_dtype,
                w_dtype,
                per_channel,
                seed,
            },
        )
        .prop_filter("non-empty output", |s| {
            (0..2).all(|a| s.hw[a] + s.pad[a] + s.pad[a + 2] > s.dilation[a] * (s.kernel[a] - 1))
        })
}

/// Layers with one input channel per group (the planar route): depthwise with multipliers,
/// larger planes (several kernel blocks per channel), strides and dilations up to 3.
fn planar_spec() -> impl Strategy<Value = Spec> {
    (
        spec(),
        1usize..=40,
        1usize..=3,
        [1usize..=40, 1usize..=40],
        [1usize..=7, 1usize..=7],
        [1usize..=3, 1usize..=3],
        [1usize..=3, 1usize..=3],
    )
        .prop_map(|(s, groups, ocg, hw, kernel, stride, dilation)| Spec {
            cg: 1,
            groups,
            ocg,
            hw,
            kernel,
            stride,
            dilation,
            n: s.n,
            ..s
        })
        .prop_filter("non-empty output", |s| {
            (0..2).all(|a| s.hw[a] + s.pad[a] + s.pad[a + 2] > s.dilation[a] * (s.kernel[a] - 1))
        })
}

/// A small deterministic generator (the data must follow the seed, not proptest's shrinking).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
}

fn layer(s: &Spec) -> ConvLayer {
    let mut rng = Lcg(s.seed);
    let c = s.cg * s.groups;
    let oc = s.ocg * s.groups;
    let (xmin, xmax) = (s.x_dtype.min() as i32, s.x_dtype.max() as i32);
    let (wmin, wmax) = (s.w_dtype.min() as i32, s.w_dtype.max() as i32);
    let input = (0..s.n * c * s.hw[0] * s.hw[1])
        .map(|_| rng.range(xmin, xmax))
        .collect();
    let weight = (0..oc * s.cg * s.kernel[0] * s.kernel[1])
        .map(|_| rng.range(wmin, wmax))
        .collect();
    let zps: Vec<i32> = (0..if s.per_channel { oc } else { 1 })
        .map(|_| rng.range(wmin, wmax))
        .collect();
    let quant = if s.per_channel {
        WeightQuant::per_channel(vec![0.01; oc], zps)
    } else {
        WeightQuant::per_tensor(0.01, zps[0])
    };
    ConvLayer::new(
        "random",
        ConvParams {
            kernel: None,
            stride: s.stride,
            dilation: s.dilation,
            padding: Padding {
                top: s.pad[0],
                left: s.pad[1],
                bottom: s.pad[2],
                right: s.pad[3],
            },
            groups: s.groups,
        },
        Activations {
            dtype: s.x_dtype,
            shape: [s.n, c, s.hw[0], s.hw[1]],
            data: input,
            scale: Some(0.1),
            zero_point: rng.range(xmin, xmax),
        },
        Weights {
            dtype: s.w_dtype,
            shape: [oc, s.cg, s.kernel[0], s.kernel[1]],
            data: weight,
            quant,
        },
        None,
        OutputQuant {
            dtype: DType::Uint8,
            scale: Some(1.0),
            zero_point: 0,
            clamp: None,
        },
        false,
    )
    .unwrap()
}

fn run_plan(plan: &ConvPlan, layer: &ConvLayer) -> Vec<i32> {
    let stage = qconv::fastconv::output::Accumulators;
    let mut out = vec![i32::MIN; layer.output_len()];
    plan.run(&layer.input.data, &mut out, &stage);
    // The same plan on the input's own integer type (u8 inputs take their own copy path).
    let mut typed = vec![i32::MIN; layer.output_len()];
    let data = &layer.input.data;
    match layer.input.dtype {
        DType::Uint8 => {
            let bytes: Vec<u8> = data.iter().map(|&v| v as u8).collect();
            plan.run(&bytes, &mut typed, &stage);
        }
        DType::Int8 => {
            let bytes: Vec<i8> = data.iter().map(|&v| v as i8).collect();
            plan.run(&bytes, &mut typed, &stage);
        }
        _ => typed.clone_from(&out),
    }
    assert_eq!(typed, out, "the plan on {} values", layer.input.dtype);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn exact_kernels_match_the_reference(s in spec()) {
        let l = layer(&s);
        let reference: Vec<i32> = exact::reference_accumulators(&l).into_iter().map(|a| a as i32).collect();
        for kernel in KernelIsa::available() {
            for threads in [1, 3] {
                let plan = ConvPlan::new(&l, Reduction::Exact, kernel, threads).unwrap().expect("fits int32");
                let route = if s.cg == 1 { "planar" } else { "direct" };
                prop_assert!(plan.route().contains(route), "{}", plan.route());
                // Run a bigger, different layer first so that nothing from it may leak.
                prop_assert_eq!(&run_plan(&plan, &l), &reference, "{} x{}", kernel, threads);
                let mut other = l.clone();
                for v in other.input.data.iter_mut() {
                    *v = if s.x_dtype == DType::Uint8 { 255 - *v } else { -1 - *v };
                }
                let expected: Vec<i32> = exact::reference_accumulators(&other).into_iter().map(|a| a as i32).collect();
                prop_assert_eq!(run_plan(&plan, &other), expected, "second run {} x{}", kernel, threads);
            }
        }
    }

    #[test]
    fn planar_kernels_match_the_reference(s in planar_spec()) {
        let l = layer(&s);
        let reference: Vec<i32> = exact::reference_accumulators(&l).into_iter().map(|a| a as i32).collect();
        for kernel in KernelIsa::available() {
            for threads in [1, 2] {
                let plan = ConvPlan::new(&l, Reduction::Exact, kernel, threads).unwrap().expect("fits int32");
                prop_assert!(plan.route().contains("planar"), "{}", plan.route());
                prop_assert_eq!(&run_plan(&plan, &l), &reference, "{} x{}", kernel, threads);
                // A second input through the same plan: the padding of the reused buffers must
                // still be zero.
                let mut other = l.clone();
                for v in other.input.data.iter_mut() {
                    *v = if s.x_dtype == DType::Uint8 { 255 - *v } else { -1 - *v };
                }
                let expected: Vec<i32> = exact::reference_accumulators(&other).into_iter().map(|a| a as i32).collect();
                prop_assert_eq!(run_plan(&plan, &other), expected, "second run {} x{}", kernel, threads);
            }
        }
    }

    #[test]
    fn pair_kernels_match_the_reference(s in spec()) {
        let s = Spec { x_dtype: DType::Uint8, w_dtype: DType::Int8, ..s };
        let l = layer(&s);
        let g = &l.geometry;
        let zps: Vec<i32> = (0..g.out_channels).map(|oc| l.weight.quant.zero_point(oc)).collect();
        let model = ZeroPointCorrectedAccumulator::new(
            l.input.zero_point, &zps, &l.weight.data, g.reduction_len(), true, ReductionOrder::TapMajor,
        );
        let reference = accumulate(g, &l.input.data, &l.weight.data, &model);
        for kernel in KernelIsa::available() {
            let plan = ConvPlan::new(&l, Reduction::PairSaturating, kernel, 2).unwrap().expect("u8 x s8");
            // Odd channel counts pair across taps: the NHWC-row GEMM route.
            prop_assert_eq!(plan.route().contains("direct"), s.cg.is_multiple_of(2), "{}", plan.route());
            prop_assert_eq!(&run_plan(&plan, &l), &reference, "{}", kernel);
        }
        // Symmetric weights: one input channel per group takes the planar pairs route.
        let mut sym = l.clone();
        sym.weight.quant.zero_points.iter_mut().for_each(|z| *z = 0);
        let zero_zps = vec![0; g.out_channels];
        let model = ZeroPointCorrectedAccumulator::new(
            sym.input.zero_point, &zero_zps, &sym.weight.data, g.reduction_len(), true,
            ReductionOrder::TapMajor,
        );
        let reference = accumulate(g, &sym.input.data, &sym.weight.data, &model);
        for kernel in KernelIsa::available() {
            let plan = ConvPlan::new(&sym, Reduction::PairSaturating, kernel, 2).unwrap().expect("u8 x s8");
            prop_assert_eq!(plan.route().contains("planar"), s.cg == 1, "{}", plan.route());
            prop_assert_eq!(&run_plan(&plan, &sym), &reference, "symmetric {}", kernel);
        }
    }

    /// The float32 requantization run kernels give the scalar definition's integers, and the
    /// engines' requantizers give the same through their runs as element by element.
    #[test]
    fn fp32_requantization_runs_match_the_scalar_definition(
        seed in any::<u64>(),
        n in 0usize..70,
        pack_chain in any::<bool>(),
        signed in any::<bool>(),
        relu in any::<bool>(),
        bias_kind in 0u8..3,
        multiplier_exp in -30i32..4,
    ) {
        use qconv::kernels::scalar::{Fp32Run, requantize_fp32};
        let mut rng = Lcg(seed);
        let accs: Vec<i32> = (0..n)
            .map(|i| match i % 7 {
                0 => i32::MIN + rng.range(0, 3),
                1 => i32::MAX - rng.range(0, 3),
                _ => rng.range(-(1 << 24), 1 << 24),
            })
            .collect();
        let (dlo, dhi) = if signed { (-128, 127) } else { (0, 255) };
        let zero_point = rng.range(dlo, dhi);
        let m = (rng.range(1, 1 << 20) as f32) * 2f32.powi(multiplier_exp - 20);
        let (bias, reciprocal) = match bias_kind {
            0 => (0.0, 0.0),
            1 => (rng.range(-5000, 5000) as f32 * 0.37, 1.0),
            _ => (rng.range(-5000, 5000) as f32 * 0.37, 1.0 / (rng.range(1, 999) as f32 * 0.013)),
        };
        let p = Fp32Run {
            int_add: rng.range(-100_000, 100_000),
            bias,
            reciprocal,
            multiplier: m,
            zero_point,
            pack_chain,
            dtype_range: (dlo, dhi),
            range: (if relu { zero_point } else { dlo }, dhi),
        };
        let mut expected = vec![0; n];
        requantize_fp32(&p, &accs, &mut expected);
        for kernel in KernelIsa::available() {
            let mut out = vec![7; n];
            qconv::kernels::requantize_fp32(kernel, &p, &accs, &mut out);
            prop_assert_eq!(&out, &expected, "{}", kernel);
        }
    }
}

#[test]
fn engine_requantizers_give_the_same_integers_as_runs() {
    use qconv::requant::{
        FloatBiasFp32Requantizer, FloatBiasTerm, Fp32Requantizer, Fp32Store, Requantizer,
    };
    let mut rng = Lcg(11);
    let accs: Vec<i32> = (0..500).map(|_| rng.range(-3_000_000, 3_000_000)).collect();
    let check = |r: &dyn Fn(i32) -> i32, run: qconv::kernels::scalar::Fp32Run| {
        for kernel in KernelIsa::available() {
            let mut out = vec![0; accs.len()];
            qconv::kernels::requantize_fp32(kernel, &run, &accs, &mut out);
            let expected: Vec<i32> = accs.iter().map(|&a| r(a)).collect();
            assert_eq!(out, expected, "{kernel}");
        }
    };
    for store in [Fp32Store::PackChain, Fp32Store::FloatClamp] {
        for dtype in [DType::Uint8, DType::Int8] {
            let r = Fp32Requantizer {
                multipliers: vec![0.000731, 0.0191],
                bias: vec![-1234, 98765],
                zero_point: if dtype == DType::Uint8 { 131 } else { -7 },
                dtype,
                range: (dtype.min() as i32 + 3, dtype.max() as i32 - 2),
                store,
            };
            for oc in 0..2 {
                check(&|a| r.requantize(a, oc), r.fp32_run(oc).expect("a run"));
            }
        }
    }
    for bias in [
        FloatBiasTerm::None,
        FloatBiasTerm::Precomputed(vec![-12.75, 3001.5]),
        FloatBiasTerm::FusedReciprocal {
            bias: vec![0.31, -2.7],
            reciprocal: vec![1234.5678, 77.0001],
        },
    ] {
        let r = FloatBiasFp32Requantizer {
            multipliers: vec![0.00123, 0.0456],
            bias,
            zero_point: 128,
            range: (128, 255),
        };
        for oc in 0..2 {
            check(&|a| r.requantize(a, oc), r.fp32_run(oc).expect("a run"));
        }
    }
}

#[test]
fn long_reductions_stay_exact_and_overlong_ones_fall_back() {
    // K = 4 * 3 * 3 * 300 = 10800 full-range products: far past int16, inside int32.
    let s = Spec {
        n: 1,
        cg: 1200,
        groups: 1,
        ocg: 5,
        hw: [3, 3],
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        pad: [1, 1, 1, 1],
        x_dtype: DType::Uint8,
        w_dtype: DType::Int8,
        per_channel: true,
        seed: 7,
    };
    for plan in exact_plans_match_the_reference(&layer(&s)) {
        assert!(plan.route().contains("direct"), "{}", plan.route());
    }
    // 140000 products of at least 128 * 128 may not fit int32: no fast plan.
    let s = Spec {
        cg: 140_000,
        hw: [1, 1],
        kernel: [1, 1],
        pad: [0; 4],
        ocg: 1,
        ..s
    };
    let l = layer(&s);
    assert!(
        ConvPlan::new(&l, Reduction::Exact, KernelIsa::SCALAR, 1)
            .unwrap()
            .is_none()
    );
}

#[test]
fn planar_sums_past_float32_exact_integers_take_the_gemm_route() {
    // 33 x 33 taps of products up to at least 128 * 128 may pass 2^24, whatever the zero
    // points: exact, but not planar.
    let s = Spec {
        n: 1,
        cg: 1,
        groups: 3,
        ocg: 1,
        hw: [34, 34],
        kernel: [33, 33],
        stride: [1, 1],
        dilation: [1, 1],
        pad: [0; 4],
        x_dtype: DType::Uint8,
        w_dtype: DType::Int8,
        per_channel: false,
        seed: 3,
    };
    for plan in exact_plans_match_the_reference(&layer(&s)) {
        assert!(plan.route().contains("direct"), "{}", plan.route());
    }
}

/// Runs `l` through an exact plan on every kernel set, checks each against the reference loop,
/// and returns the plans.
fn exact_plans_match_the_reference(l: &ConvLayer) -> Vec<ConvPlan> {
    let reference: Vec<i32> = exact::reference_accumulators(l)
        .into_iter()
        .map(|a| a as i32)
        .collect();
    KernelIsa::available()
        .into_iter()
        .map(|kernel| {
            let plan = ConvPlan::new(l, Reduction::Exact, kernel, 1)
                .unwrap()
                .expect("fits int32");
            assert_eq!(run_plan(&plan, l), reference, "{kernel}");
            plan
        })
        .collect()
}

#[test]
fn every_kernel_set_this_cpu_has_is_tested() {
    let names: Vec<&str> = KernelIsa::available().iter().map(|k| k.name()).collect();
    eprintln!("kernel sets on this CPU: {names:?}");
    for name in ["avx2", "avx-vnni", "avx512-vnni"] {
        if !names.contains(&name) {
            eprintln!("skipped: this CPU cannot run the {name} kernels");
        }
    }
    assert_eq!(names[0], "scalar");
}
