//! Bounded fuzzing inside the test suite: arbitrary and mutated ONNX bytes give
//! a graph or an error, never a panic; a graph that loads also runs.
//! (Longer coverage-guided runs: fuzz/.)

use nncert_model::onnx::{export_onnx_bytes, import_onnx_bytes};
use nncert_model::reference_forward;
use nncert_model::testing::{random_conv_net, random_residual_net};
use proptest::prelude::*;
use std::sync::OnceLock;

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            export_onnx_bytes(&random_conv_net(1)).unwrap(),
            export_onnx_bytes(&random_residual_net(2)).unwrap(),
        ]
    })
}

fn load_and_run(bytes: &[u8]) {
    if let Ok(g) = import_onnx_bytes(bytes) {
        if g.input_len() <= 100_000 && g.param_count() <= 1_000_000 {
            let _ = reference_forward(&g, &vec![0.5; g.input_len()]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        load_and_run(&bytes);
    }

    #[test]
    fn mutated_models_never_panic(which in 0usize..2, flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>(), truncate in any::<bool>()) {
        let mut bytes = seeds()[which].clone();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        load_and_run(&bytes);
    }
}

const OPS: [&str; 14] = [
    "Conv",
    "Gemm",
    "MatMul",
    "Relu",
    "Reshape",
    "Flatten",
    "MaxPool",
    "AveragePool",
    "Pad",
    "Concat",
    "Transpose",
    "Add",
    "BatchNormalization",
    "Squeeze",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Structure-aware: change attribute values, tensor dims, op types and
    /// wiring of a decoded model, so that the importer's checks are reached.
    #[test]
    fn structurally_mutated_models_never_panic(
        which in 0usize..2,
        edits in proptest::collection::vec((0u8..5, any::<prop::sample::Index>(), any::<prop::sample::Index>(), -3i64..40), 1..4),
    ) {
        use nncert_model::onnx::proto::ModelProto;
        use prost::Message;
        let mut m = ModelProto::decode(&seeds()[which][..]).unwrap();
        let g = m.graph.as_mut().unwrap();
        for (kind, a, b, v) in edits {
            match kind {
                0 => {
                    let n = a.get_mut(&mut g.node);
                    if !n.attribute.is_empty() {
                        let at = b.get_mut(&mut n.attribute);
                        if at.ints.is_empty() { at.i = Some(v) } else { *b.get_mut(&mut at.ints) = v }
                    }
                }
                1 => {
                    let t = a.get_mut(&mut g.initializer);
                    if !t.dims.is_empty() { *b.get_mut(&mut t.dims) = v; }
                }
                2 => a.get_mut(&mut g.node).op_type = Some(OPS[b.index(OPS.len())].to_string()),
                3 => {
                    let src = g.node[b.index(g.node.len())].output[0].clone();
                    let n = a.get_mut(&mut g.node);
                    if !n.input.is_empty() { n.input[0] = src; }
                }
                _ => {
                    let t = a.get_mut(&mut g.initializer);
                    if let Some(r) = t.raw_data.as_mut() { r.truncate(b.index(r.len() + 1)); }
                }
            }
        }
        load_and_run(&m.encode_to_vec());
    }
}
