//! Prints, for every float-path mismatch in golden files, where the element lies relative to a
//! rounding boundary: `cargo run --release --example float_boundary -- FILE...`.

use qconv::engines::{EngineKind, RunOptions, float_path, run};
use qconv::io::golden::read_cases;

fn main() {
    for path in std::env::args().skip(1) {
        for case in read_cases(&path).expect("readable golden file") {
            let Some(expected) = case.expected.get("float_path") else {
                continue;
            };
            let out =
                run(EngineKind::FloatPath, &case.layer, &RunOptions::default()).expect("runs");
            for (i, (&e, &g)) in expected.iter().zip(&out.values).enumerate() {
                if e != g as i64 {
                    let a = float_path::boundary_analysis(&case.layer, i).expect("analysis");
                    println!(
                        "{} {:?}: expected {e}, got {g}; steps {:.9}, boundary distance {:.3e}, \
                         float32 error bound {:.3e} -> {}",
                        case.id,
                        case.layer.geometry.output_coords(i),
                        a.steps,
                        a.boundary_distance,
                        a.error_bound,
                        if a.is_ambiguous() {
                            "within bound"
                        } else {
                            "OUTSIDE bound"
                        }
                    );
                }
            }
        }
    }
}
