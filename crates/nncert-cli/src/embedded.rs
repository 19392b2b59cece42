//! The model and test images compiled into the binary (assets/README.md).

use nncert_data::Dataset;
use nncert_model::Graph;

pub const MODEL_NAME: &str = "mnist_relu_stable_conv (Xiao et al. 2019, embedded)";
const MODEL: &[u8] = include_bytes!("../assets/mnist_relu_stable_conv.onnx");
const IMAGES: &[u8] = include_bytes!("../assets/mnist-test200-images-idx3-ubyte.gz");
const LABELS: &[u8] = include_bytes!("../assets/mnist-test200-labels-idx1-ubyte.gz");

pub fn model() -> Graph {
    nncert_model::onnx::import_onnx_bytes(MODEL).expect("embedded model is valid")
}

pub fn mnist_test() -> Dataset {
    nncert_data::mnist_from_bytes(IMAGES.to_vec(), LABELS.to_vec())
        .expect("embedded images are valid")
}
