//! ONNX import against onnxruntime and the ONNX backend node tests. Every case is a folder in the backend-test
//! layout (`model.onnx`, `test_data_set_<k>/input_<i>.pb`, `output_<j>.pb`):
//! - tests/fixtures/onnx/models: segmentation networks exported by both PyTorch exporters, outputs from
//!   onnxruntime (tools/make_onnx_fixtures.py): max abs error <= 1e-3 x max(1, max |reference|), argmax agreement
//!   >= 99.9%.
//! - tests/fixtures/onnx/node: the onnx package's node tests for the ops atrous reads
//!   (tools/make_onnx_node_fixtures.py); `expected.tsv` lists each case as `pass` or `skip` with the reason, and
//!   the test holds atrous to it.

mod common;

use atrous::gpu::Precision;
use atrous::model::Model;
use atrous::onnx::read_tensor_file;
use atrous::plan::{Output, PlanOptions};
use atrous::{Engine, Shape, Tensor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures(group: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(group)
}

fn case_dirs(group: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures(group))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The files `prefix_<i>.pb` of a data set, in index order.
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.is_file())
        .collect()
}

fn nchw(dims: &[usize]) -> Option<Shape> {
    if dims.len() > 4 {
        return None;
    }
    let mut d = [1usize; 4];
    d[4 - dims.len()..].copy_from_slice(dims);
    Some(Shape::new(d[0], d[1], d[2], d[3]))
}

/// Worst error of one case's data sets: (max |got - want| / max(1, max |want|), worst argmax agreement), failing
/// past `tolerance` (relative to max(1, max |want|)).
fn run_case(gpu: &Arc<atrous::Gpu>, dir: &Path) -> Result<(f64, f64), String> {
    run_case_with(gpu, dir, PlanOptions::default(), 1e-3)
}

fn run_case_with(
    gpu: &Arc<atrous::Gpu>,
    dir: &Path,
    options: PlanOptions,
    tolerance: f64,
) -> Result<(f64, f64), String> {
    let model = Model::load(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let inputs: Vec<String> = model.graph.inputs.iter().map(|i| i.name.clone()).collect();
    let outputs = model.graph.outputs.clone();
    let engine = Engine::with_options(gpu.clone(), model, options);
    let (mut worst, mut agreement) = (0.0f64, 1.0f64);
    let sets: Vec<PathBuf> = (0..)
        .map(|k| dir.join(format!("test_data_set_{k}")))
        .take_while(|p| p.is_dir())
        .collect();
    for set in sets {
        let mut tensors = Vec::new();
        for (i, file) in numbered(&set, "input").iter().enumerate() {
            let (_, dims, values) = read_tensor_file(file).map_err(|e| e.to_string())?;
            let shape = nchw(&dims).ok_or_else(|| format!("input of rank {}", dims.len()))?;
            let t = Tensor::new(shape, values.iter().map(|&v| v as f32).collect())
                .map_err(|e| e.to_string())?;
            let name = inputs
                .get(i)
                .ok_or("more input files than graph inputs")?
                .clone();
            tensors.push((name, t));
        }
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
        let got = engine.run(&refs, &names).map_err(|e| e.to_string())?;
        for (j, file) in numbered(&set, "output").iter().enumerate() {
            let (_, dims, want) = read_tensor_file(file).map_err(|e| e.to_string())?;
            let out = &got[&outputs[j]];
            let values: Vec<f64> = match out {
                Output::U32 { data, .. } => data.iter().map(|&v| v as f64).collect(),
                other => other.to_f32().data.iter().map(|&v| v as f64).collect(),
            };
            if values.len() != want.len() {
                return Err(format!(
                    "output {j}: {} values, expected {} ({dims:?})",
                    values.len(),
                    want.len()
                ));
            }
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (k, (g, w)) in values.iter().zip(&want).enumerate() {
                let e = (g - w).abs() / scale;
                let both_nan = g.is_nan() && w.is_nan();
                if g != w && !both_nan && (e.is_nan() || e > tolerance) {
                    return Err(format!(
                        "output {j} ({dims:?}) element {k}: got {g}, expected {w}"
                    ));
                }
                worst = worst.max(if e.is_nan() { 0.0 } else { e });
            }
            if let (4, Some(s)) = (dims.len(), nchw(&dims)) {
                let plane = s.h * s.w;
                let argmax = |v: &[f64], n: usize, p: usize| {
                    (0..s.c)
                        .fold((0, f64::NEG_INFINITY), |b, c| {
                            let x = v[(n * s.c + c) * plane + p];
                            if x > b.1 {
                                (c, x)
                            } else {
                                b
                            }
                        })
                        .0
                };
                let same = (0..s.n * plane)
                    .filter(|&i| {
                        argmax(&values, i / plane, i % plane) == argmax(&want, i / plane, i % plane)
                    })
                    .count();
                agreement = agreement.min(same as f64 / (s.n * plane) as f64);
            }
        }
    }
    Ok((worst, agreement))
}

/// Runs every model fixture with `options`: each within `tolerance` x max(1, max |reference|) of onnxruntime and
/// with argmax agreement at least `agreement`.
fn check_models(
    gpu: &Arc<atrous::Gpu>,
    options: PlanOptions,
    tolerance: f64,
    agreement: f64,
    label: &str,
) {
    let mut failures = Vec::new();
    for dir in case_dirs("models") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        match run_case_with(gpu, &dir, options, tolerance) {
            Ok((err, agree)) => {
                println!(
                    "{name} ({label}): max error {err:.2e} of max(1, max |reference|), argmax agreement {:.4}%",
                    agree * 100.0
                );
                if agree < agreement {
                    failures.push(format!("{name} ({label}): argmax agreement {agree}"));
                }
            }
            Err(e) => failures.push(format!("{name} ({label}): {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn exported_segmentation_networks_should_match_onnxruntime() {
    let gpu = gpu_or_skip!();
    check_models(&gpu, PlanOptions::default(), 1e-3, 0.999, "f32");
}

/// The same networks in f16 storage, with f32 and with f16 conv math: within 2e-2 x max(1, max |reference|) and
/// argmax agreement >= 99%.
#[test]
fn exported_segmentation_networks_should_match_onnxruntime_in_f16() {
    let gpu = gpu_or_skip!(Precision::F16);
    for f16_math in [false, true] {
        let label = if f16_math { "f16, f16 math" } else { "f16" };
        check_models(&gpu, common::f16_options(f16_math), 2e-2, 0.99, label);
    }
}

#[test]
fn onnx_backend_node_tests_should_pass_as_listed() {
    let gpu = gpu_or_skip!();
    let listed = std::fs::read_to_string(fixtures("node").join("expected.tsv")).unwrap_or_default();
    let expected: std::collections::HashMap<&str, &str> = listed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, f.next()?))
        })
        .collect();
    let (mut passed, mut newly, mut broken, mut report) =
        (0, Vec::new(), Vec::new(), String::new());
    for dir in case_dirs("node") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let result = run_case(&gpu, &dir);
        let reason = match &result {
            Ok(_) => "pass".to_string(),
            // The reason without the fixture's path, which differs from machine to machine.
            Err(e) => format!(
                "skip\t{}",
                e.rsplit("model.onnx: ")
                    .next()
                    .unwrap_or(e)
                    .replace(['\t', '\n'], " ")
            ),
        };
        report.push_str(&format!("{name}\t{reason}\n"));
        match (result.is_ok(), expected.get(name.as_str()).copied()) {
            (true, Some("pass")) => passed += 1,
            (true, _) => newly.push(name),
            (false, Some("pass")) => broken.push(format!("{name}: {reason}")),
            (false, _) => {}
        }
    }
    if std::env::var_os("ATROUS_ONNX_NODE_REPORT").is_some() {
        std::fs::write(fixtures("node").join("expected.tsv"), format!("# case\tpass | skip<TAB>reason (written by ATROUS_ONNX_NODE_REPORT=1 cargo test --test onnx)\n{report}")).unwrap();
    }
    println!("{passed} node tests passed; passing but listed as skipped: {newly:?}");
    assert!(
        broken.is_empty(),
        "node tests listed as passing now fail:\n{}",
        broken.join("\n")
    );
    assert!(passed > 0, "no node test passed");
}

mod errors {
    //! Hostile and broken ONNX files: clear errors naming the file, node or value; never a panic or a huge
    //! allocation. No GPU needed: loading translates the graph without one.

    use atrous::model::Model;
    use atrous::onnx::proto::{
        AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
        StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
        ValueInfoProto,
    };
    use atrous::onnx::{load_bytes, proto};
    use prost::Message;

    fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: 1,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| proto::Dimension {
                                dim_value: Some(d),
                                dim_param: None,
                            })
                            .collect(),
                    }),
                }),
            }),
        }
    }

    fn node(
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: name.into(),
            op_type: op.into(),
            domain: String::new(),
            attribute: attrs,
        }
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn weight(name: &str, dims: &[i64]) -> TensorProto {
        let n: i64 = dims.iter().product();
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: 1,
            float_data: (0..n).map(|i| (i % 7) as f32 * 0.1).collect(),
            ..Default::default()
        }
    }

    /// x [1, 2, 8, 8] -> Conv 3x3 (weight w) -> Relu -> y, plus extra nodes.
    fn model(extra: Vec<NodeProto>, output: &str) -> ModelProto {
        let mut nodes = vec![
            node(
                "Conv",
                "conv",
                &["x", "w"],
                &["c"],
                vec![ints("pads", &[1, 1, 1, 1])],
            ),
            node("Relu", "relu", &["c"], &["r"], vec![]),
        ];
        nodes.extend(extra);
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                node: nodes,
                name: "g".into(),
                initializer: vec![weight("w", &[2, 2, 3, 3])],
                input: vec![value("x", &[1, 2, 8, 8])],
                output: vec![value(output, &[])],
            }),
            metadata_props: vec![StringStringEntryProto {
                key: "atrous.size".into(),
                value: "8".into(),
            }],
            ..Default::default()
        }
    }

    fn load(m: &ModelProto) -> atrous::Result<Model> {
        load_bytes(&m.encode_to_vec(), None)
    }

    #[test]
    fn a_valid_model_should_load() {
        let m = load(&model(vec![], "r")).unwrap();
        assert_eq!(m.graph.outputs, ["r"]);
    }

    #[test]
    fn every_unsupported_node_should_be_listed_at_once() {
        let extra = vec![
            node("Foo", "foo1", &["r"], &["f"], vec![]),
            node("LSTM", "lstm", &["f"], &["l"], vec![]),
        ];
        let e = load(&model(extra, "l")).unwrap_err().to_string();
        assert!(
            e.contains("2 unsupported nodes")
                && e.contains("\"foo1\" (Foo)")
                && e.contains("\"lstm\" (LSTM)"),
            "{e}"
        );
        assert!(e.contains("Supported ops:") && e.contains("Conv"), "{e}");
    }

    #[test]
    fn bad_attributes_should_name_the_node_and_value() {
        let extra = vec![node(
            "MaxPool",
            "pool",
            &["r"],
            &["p"],
            vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[1 << 40, 1]),
            ],
        )];
        let e = load(&model(extra, "p")).unwrap_err().to_string();
        assert!(
            e.contains("\"pool\" (MaxPool)") && e.contains("over the limit"),
            "{e}"
        );
        let extra = vec![node("Pad", "pad", &["r", "pads"], &["p"], vec![])];
        let mut m = model(extra, "p");
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(TensorProto {
            name: "pads".into(),
            dims: vec![8],
            data_type: 7,
            int64_data: vec![0, 0, 1 << 62, 0, 0, 0, 0, 0],
            ..Default::default()
        });
        let e = load(&m).unwrap_err().to_string();
        assert!(e.contains("\"pad\" (Pad)") && e.contains("limit"), "{e}");
    }

    #[test]
    fn cycles_and_missing_values_should_be_errors() {
        let extra = vec![node("Add", "loop", &["r", "a"], &["a"], vec![])];
        let e = load(&model(extra, "a")).unwrap_err().to_string();
        assert!(
            e.contains("\"loop\" (Add)") && e.contains("not produced before"),
            "{e}"
        );
        let e = load(&model(vec![], "nowhere")).unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
    }

    #[test]
    fn absurd_shapes_should_be_refused_without_allocating() {
        // A ConstantOfShape of 2^40 elements feeding an Add.
        let shape = TensorProto {
            name: "s".into(),
            dims: vec![4],
            data_type: 7,
            int64_data: vec![1, 1, 1 << 20, 1 << 20],
            ..Default::default()
        };
        let extra = vec![
            node("ConstantOfShape", "zeros", &["s"], &["z"], vec![]),
            node("Add", "add", &["r", "z"], &["o"], vec![]),
        ];
        let mut m = model(extra, "o");
        m.graph.as_mut().unwrap().initializer.push(shape);
        let e = load(&m).unwrap_err().to_string();
        assert!(
            e.contains("\"zeros\" (ConstantOfShape)") && e.contains("elements"),
            "{e}"
        );
        // A weight whose dims promise far more than the file holds.
        let mut m = model(vec![], "r");
        m.graph.as_mut().unwrap().initializer[0] = TensorProto {
            name: "w".into(),
            dims: vec![1 << 30, 1 << 30, 3, 3],
            data_type: 1,
            ..Default::default()
        };
        let e = load(&m).unwrap_err().to_string();
        assert!(e.contains("\"w\""), "{e}");
    }

    #[test]
    fn missing_external_data_should_name_the_file() {
        let dir = std::env::temp_dir().join(format!("atrous-onnx-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = model(vec![], "r");
        let w = &mut m.graph.as_mut().unwrap().initializer[0];
        w.float_data.clear();
        w.data_location = 1;
        w.external_data = vec![StringStringEntryProto {
            key: "location".into(),
            value: "weights.bin".into(),
        }];
        let path = dir.join("m.onnx");
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        let e = Model::load(&path).unwrap_err().to_string();
        assert!(e.contains("weights.bin"), "{e}");
        w_escape(&dir);
    }

    #[test]
    fn external_data_beside_the_model_should_be_read() {
        let dir = std::env::temp_dir().join(format!("atrous-onnx-extok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = model(vec![], "r");
        let w = &mut m.graph.as_mut().unwrap().initializer[0];
        let values = std::mem::take(&mut w.float_data);
        // 8 bytes of something else first: the tensor starts at an offset.
        let mut bytes = vec![0xAAu8; 8];
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(dir.join("weights.bin"), &bytes).unwrap();
        w.data_location = 1;
        w.external_data = vec![
            StringStringEntryProto {
                key: "location".into(),
                value: "weights.bin".into(),
            },
            StringStringEntryProto {
                key: "offset".into(),
                value: "8".into(),
            },
            StringStringEntryProto {
                key: "length".into(),
                value: (values.len() * 4).to_string(),
            },
        ];
        let path = dir.join("m.onnx");
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        let loaded = Model::load(&path).unwrap();
        assert_eq!(loaded.weights.get("w").unwrap().data, values);
        // A length that disagrees with the shape is refused before anything is read.
        let w = &mut m.graph.as_mut().unwrap().initializer[0];
        w.external_data[2].value = ((values.len() - 1) * 4).to_string();
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        let e = Model::load(&path).unwrap_err().to_string();
        assert!(e.contains("weights.bin") && e.contains("need"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn w_escape(dir: &std::path::Path) {
        let mut m = model(vec![], "r");
        let w = &mut m.graph.as_mut().unwrap().initializer[0];
        w.float_data.clear();
        w.data_location = 1;
        w.external_data = vec![StringStringEntryProto {
            key: "location".into(),
            value: "../../etc/passwd".into(),
        }];
        let path = dir.join("escape.onnx");
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        let e = Model::load(&path).unwrap_err().to_string();
        assert!(e.contains("inside the model's folder"), "{e}");
    }

    #[test]
    fn truncated_and_garbage_files_should_be_errors_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("atrous-onnx-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = model(vec![], "r").encode_to_vec();
        for (name, data) in [
            ("truncated.onnx", &bytes[..bytes.len() / 2]),
            ("garbage.onnx", &b"\xff\xfe not protobuf"[..]),
            ("empty.onnx", &[][..]),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, data).unwrap();
            let e = Model::load(&path).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    /// Structured fuzzing: every op atrous reads, with random inputs (a computed tensor, a weight, an int64 shape, a
    /// scalar, or none) and random attributes (hostile values included): it translates or fails with an error.
    #[test]
    fn every_op_with_random_inputs_and_attributes_should_translate_or_fail_cleanly() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let random_ints = |rng: &mut rand::rngs::SmallRng| -> Vec<i64> {
            let pool = [-1i64, 0, 1, 2, 3, 4, -4, 1 << 40, i64::MIN, i64::MAX];
            (0..rng.random_range(0..=5))
                .map(|_| pool[rng.random_range(0..pool.len())])
                .collect()
        };
        let names = [
            "kernel_shape",
            "pads",
            "strides",
            "dilations",
            "axes",
            "perm",
            "output_padding",
            "output_shape",
        ];
        let scalars = [
            "axis",
            "group",
            "keepdims",
            "ceil_mode",
            "count_include_pad",
            "to",
            "allowzero",
            "storage_order",
        ];
        let strings = [
            ("mode", ["nearest", "linear", "cubic", "reflect"]),
            ("auto_pad", ["SAME_UPPER", "VALID", "NOTSET", "x"]),
        ];
        let per_op = std::env::var("ATROUS_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(40, |n| n / 75);
        for op in atrous::onnx::OnnxGraph::supported_ops() {
            for _ in 0..per_op {
                let choices = ["x", "w", "s", "f", ""];
                let inputs: Vec<&str> = (0..rng.random_range(0..=4))
                    .map(|_| choices[rng.random_range(0..choices.len())])
                    .collect();
                let mut attrs = Vec::new();
                for n in names {
                    if rng.random_bool(0.3) {
                        attrs.push(ints(n, &random_ints(&mut rng)));
                    }
                }
                for n in scalars {
                    if rng.random_bool(0.2) {
                        let v = [0i64, 1, -1, 7, 1 << 33][rng.random_range(0..5)];
                        attrs.push(AttributeProto {
                            name: n.into(),
                            r#type: 2,
                            i: v,
                            ..Default::default()
                        });
                    }
                }
                for (n, values) in strings {
                    if rng.random_bool(0.2) {
                        let v = values[rng.random_range(0..values.len())];
                        attrs.push(AttributeProto {
                            name: n.into(),
                            r#type: 3,
                            s: v.as_bytes().to_vec(),
                            ..Default::default()
                        });
                    }
                }
                if rng.random_bool(0.2) {
                    let v = [0.0f32, -1.0, f32::NAN, f32::INFINITY, 1e30][rng.random_range(0..5)];
                    attrs.push(AttributeProto {
                        name: "alpha".into(),
                        r#type: 1,
                        f: v,
                        ..Default::default()
                    });
                }
                let outputs: Vec<&str> = if rng.random_bool(0.8) {
                    vec!["y"]
                } else {
                    vec!["y", "z"]
                };
                let mut m = model(vec![node(op, "fuzzed", &inputs, &outputs, attrs)], "y");
                let g = m.graph.as_mut().unwrap();
                g.node.remove(1);
                g.node[0].output = vec!["x".into()];
                g.initializer.push(TensorProto {
                    name: "s".into(),
                    dims: vec![4],
                    data_type: 7,
                    int64_data: vec![1, 2, 8, 8],
                    ..Default::default()
                });
                g.initializer.push(TensorProto {
                    name: "f".into(),
                    dims: vec![],
                    data_type: 1,
                    float_data: vec![0.5],
                    ..Default::default()
                });
                let _ = load(&m);
            }
        }
    }

    /// A bounded fuzz run: mutated copies of real exports (bit flips, byte overwrites, truncations, splices) must
    /// load or fail with an error, never panic. `ATROUS_FUZZ_ITERS` runs longer.
    #[test]
    fn mutated_onnx_files_should_load_or_fail_cleanly() {
        use rand::SeedableRng;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
        let seeds: Vec<Vec<u8>> = [
            "models/segnet_dynamo",
            "models/unet_dynamic_ts",
            "node/test_resize_upsample_sizes_nearest",
        ]
        .iter()
        .filter_map(|c| std::fs::read(root.join(c).join("model.onnx")).ok())
        .chain(std::iter::once(model(vec![], "r").encode_to_vec()))
        .collect();
        let iters: usize = std::env::var("ATROUS_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let (mut ok, mut failed) = (0, 0);
        for i in 0..iters {
            let b = crate::common::mutate_bytes(&mut rng, &seeds[i % seeds.len()]);
            match load_bytes(&b, None) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    failed += 1
                }
            }
        }
        println!("{iters} mutated models: {ok} loaded, {failed} refused");
        assert_eq!(ok + failed, iters);
    }
}
