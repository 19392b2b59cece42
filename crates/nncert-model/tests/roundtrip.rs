//! Native save/load and ONNX export/import round-trip.

use nncert_model::native::{load_native, save_native};
use nncert_model::onnx::{export_onnx_bytes, import_onnx_bytes};
use nncert_model::testing::{random_conv_net, random_inputs, random_residual_net};
use nncert_model::{reference_forward, Graph};

fn outputs(g: &Graph) -> Vec<f64> {
    let x: Vec<f64> = random_inputs(g, 3, 4).iter().map(|&v| v as f64).collect();
    reference_forward(g, &x).unwrap()
}

#[test]
fn native_format_round_trips_exactly() {
    let dir = std::env::temp_dir().join(format!("nncert-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, g) in [random_conv_net(1), random_residual_net(2)]
        .into_iter()
        .enumerate()
    {
        let path = dir.join(format!("net{i}.json"));
        save_native(&g, &path).unwrap();
        assert!(path.with_extension("safetensors").exists());
        assert_eq!(load_native(&path).unwrap(), g);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn onnx_export_then_import_computes_the_same() {
    for g in [random_conv_net(3), random_residual_net(4)] {
        let bytes = export_onnx_bytes(&g).unwrap();
        let back = import_onnx_bytes(&bytes).unwrap();
        assert_eq!(
            outputs(&back),
            outputs(&g),
            "exported model computes differently"
        );
        assert_eq!(back.input_shape(), g.input_shape());
    }
}

#[test]
fn gzip_compressed_onnx_loads() {
    use std::io::Write;
    let g = random_conv_net(5);
    let bytes = export_onnx_bytes(&g).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&bytes).unwrap();
    let back = import_onnx_bytes(&enc.finish().unwrap()).unwrap();
    assert_eq!(outputs(&back), outputs(&g));
}

/// ONNX graphs are in SSA form: the input, the initializers and the node
/// outputs each define a distinct name (ONNX Runtime refuses the model
/// otherwise; nncert's importer is more lenient, so this is checked here).
#[test]
fn onnx_export_defines_every_value_once() {
    use nncert_model::onnx::proto;
    use prost::Message;
    for g in [random_conv_net(6), random_residual_net(7)] {
        let model = proto::ModelProto::decode(&export_onnx_bytes(&g).unwrap()[..]).unwrap();
        let graph = model.graph.unwrap();
        let mut names: Vec<String> = graph.input.iter().map(|v| v.name().to_string()).collect();
        names.extend(graph.initializer.iter().map(|t| t.name().to_string()));
        names.extend(graph.node.iter().flat_map(|n| n.output.clone()));
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a value name is defined twice");
        let out = graph.output[0].name();
        assert!(
            names.iter().any(|n| n == out),
            "the output is never defined"
        );
    }
}
