#![no_main]
//! Any bytes: a graph or an error, never a panic; a small graph also runs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = nncert_model::onnx::import_onnx_bytes(data) {
        if g.input_len() <= 100_000 && g.param_count() <= 1_000_000 {
            let _ = nncert_model::reference_forward(&g, &vec![0.5; g.input_len()]);
        }
    }
});
