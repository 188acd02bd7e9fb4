//! safetensors weights: f32, f16 and bf16 read as f32, prefix lookup, and errors naming the tensor.

use atrous::weights::Weights;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;

fn write(path: &std::path::Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = HashMap::from([("architecture".to_string(), "test".to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

#[test]
fn f32_f16_and_bf16_tensors_should_read_as_f32() {
    let values = [1.5f32, -2.25, 0.0078125, 65504.0];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16_bytes: Vec<u8> = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16_bytes: Vec<u8> = values
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let path =
        std::env::temp_dir().join(format!("atrous-weights-{}.safetensors", std::process::id()));
    write(
        &path,
        &[
            (
                "encoder.layer1.0.conv1.weight",
                Dtype::F32,
                vec![2, 2],
                f32_bytes,
            ),
            (
                "encoder.layer1.0.conv2.weight",
                Dtype::F16,
                vec![4],
                f16_bytes,
            ),
            (
                "encoder.layer1.0.bn1.num_batches_tracked",
                Dtype::I64,
                vec![],
                7i64.to_le_bytes().to_vec(),
            ),
            ("decoder.weight", Dtype::BF16, vec![1, 4], bf16_bytes),
        ],
    );
    let w = Weights::open(&path).unwrap();
    assert_eq!(w.metadata().unwrap()["architecture"], "test");
    assert_eq!(w.get("encoder.layer1.0.conv1.weight").unwrap().data, values);
    assert_eq!(w.get("encoder.layer1.0.conv2.weight").unwrap().data, values);
    let bf16: Vec<f32> = values
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    assert_eq!(w.get_shaped("decoder.weight", &[1, 4]).unwrap(), bf16);

    // Prefix views walk a state_dict as model builders do.
    let block = w.root().pp("encoder").pp("layer1").pp(0);
    assert_eq!(block.name("conv1.weight"), "encoder.layer1.0.conv1.weight");
    assert!(block.contains("conv2.weight") && !block.contains("conv3.weight"));
    assert_eq!(block.shape("conv1.weight").unwrap(), vec![2, 2]);
    let err = block.shape("conv3.weight").unwrap_err().to_string();
    assert!(
        err.contains("encoder.layer1.0.conv3.weight") && err.contains("missing"),
        "{err}"
    );

    // Errors name the tensor and the shapes; other dtypes are refused with the dtype named.
    let err = w
        .get_shaped("decoder.weight", &[4])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("decoder.weight") && err.contains("[1, 4]") && err.contains("[4]"),
        "{err}"
    );
    let err = w
        .get("encoder.layer1.0.bn1.num_batches_tracked")
        .unwrap_err()
        .to_string();
    assert!(err.contains("I64"), "{err}");
    std::fs::remove_file(&path).unwrap();
}
