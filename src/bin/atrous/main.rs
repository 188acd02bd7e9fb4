//! The atrous command-line tool.

use atrous::gpu::Precision;
use atrous::image_io::StagedFile;
use atrous::models;
use atrous::plan::PlanOptions;
use atrous::weights::Weights;
use atrous::{Engine, Error, Gpu, Model, Result, Shape, Tensor};
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "atrous",
    version,
    about = "Semantic segmentation on any GPU through wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the GPU stores and computes floats: `--precision` and `--f16-math`, shared by every command that runs a model.
#[derive(clap::Args, Clone, Copy)]
pub struct Numerics {
    /// Storage of activations and weights on the GPU: f32, or f16 (needs SHADER_F16).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// With --precision f16, whether ungrouped convs multiply in f16 (summing in f32): on, off, or auto (on for
    /// GPUs; off for CPU adapters such as lavapipe, which emulate f16 arithmetic slowly).
    #[arg(long, value_enum, default_value_t = F16Math::Auto)]
    f16_math: F16Math,
    /// Time every kernel that can run each conv on this adapter and keep the fastest, cached per adapter, driver
    /// and conv shape in ATROUS_TUNE_CACHE (default ~/.cache/atrous/tune.json), so later runs start tuned. Also
    /// on with ATROUS_TUNE=1.
    #[arg(long)]
    tune: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum F16Math {
    Auto,
    On,
    Off,
}

impl Numerics {
    /// Plan options with these numerics (and the defaults otherwise).
    pub fn options(self) -> PlanOptions {
        let defaults = PlanOptions::default();
        PlanOptions {
            tune: self.tune || defaults.tune,
            precision: self.precision,
            f16_math: match self.f16_math {
                F16Math::Auto => None,
                F16Math::On => Some(true),
                F16Math::Off => Some(false),
            },
            ..defaults
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on tensors: reads f32 NCHW inputs from a safetensors file, writes every graph output.
    Run {
        /// A model: an ONNX file (.onnx), atrous's portable format (docs/model-format.md), a PyTorch state_dict in
        /// safetensors (tools/export.py) of one of the zoo's architectures, or an smp save_pretrained folder.
        #[arg(long)]
        model: PathBuf,
        /// The architecture of a state_dict: deeplabv3_resnet50, deeplabv3_resnet101,
        /// deeplabv3_mobilenet_v3_large, fcn_resnet50, fcn_resnet101, lraspp_mobilenet_v3_large, unet. Default: the
        /// file's metadata "architecture", else detected from the tensor names.
        #[arg(long)]
        arch: Option<String>,
        /// A safetensors file holding the tensor `input` (or one tensor per graph input, by name).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the outputs (f32, NCHW, by graph output name).
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        numerics: Numerics,
    },
    /// Segment photos: writes <stem>.mask.png (class per pixel), <stem>.color.png (palette colours) and
    /// <stem>.overlay.png (the photo blended with the colours) for each image, and prints each class's share.
    ///
    /// Outputs mirror the inputs' tree under --out: each image's path is taken relative to the deepest directory
    /// holding every input named (a directory named counts itself, a file its own directory), so a lone directory's
    /// images keep their paths within it and a lone file goes straight into --out. Where two images of one folder
    /// share a stem (x.png, x.jpg; compared ignoring case), both keep their extension: x.png.mask.png, x.jpg.mask.png.
    /// No input file (nor the model) is ever overwritten: that image fails instead. Each file is written under a
    /// temporary name and renamed into place once complete. A batch goes on past a failed image, reports each, and
    /// exits non-zero with "N of M images failed".
    Segment {
        /// The model (ONNX, atrous format, state_dict or smp folder); defaults to the shipped MediaPipe selfie
        /// segmenter.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The architecture, for weights without an atrous graph.
        #[arg(long)]
        arch: Option<String>,
        /// Output directory.
        #[arg(long, default_value = "segmented")]
        out: PathBuf,
        /// Also write <stem>.probs.safetensors: the class probabilities (1 x C x H x W).
        #[arg(long)]
        probs: bool,
        #[command(flatten)]
        numerics: Numerics,
        #[command(flatten)]
        preprocessing: segment::Preprocessing,
        #[command(flatten)]
        tiles: tiles::TileArgs,
        /// Images (PNG, JPEG, TIFF, WebP) or directories to walk for them; with --tile, GeoTIFF scenes or
        /// directories of them. TIFF files given alone are scenes even without --tile (1024 x 1024 windows).
        #[arg(required_unless_present = "scenes_from")]
        images: Vec<PathBuf>,
    },
    /// Time a model or a single op: latency, images/s, planned memory, and per-kernel GPU times.
    Bench(bench::BenchArgs),
    /// List the GPU adapters, the one atrous picks, its features and limits; with --model, describe a model
    /// instead (inputs, outputs, op histogram, and for ONNX anything unsupported).
    Info {
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            model,
            arch,
            input,
            output,
            numerics,
        } => run(&model, arch.as_deref(), &input, &output, numerics),
        Command::Segment {
            model,
            arch,
            out,
            probs,
            numerics,
            preprocessing,
            tiles,
            images,
        } if tiles::wanted(&tiles, &images) => tiles::run(
            model.as_deref(),
            arch.as_deref(),
            &out,
            probs,
            numerics,
            &preprocessing,
            &tiles,
            &images,
        ),
        Command::Segment {
            model,
            arch,
            out,
            probs,
            numerics,
            preprocessing,
            images,
            ..
        } => segment::run(
            model.as_deref(),
            arch.as_deref(),
            &out,
            probs,
            numerics,
            &preprocessing,
            &images,
        ),
        Command::Bench(args) => bench::run(&args),
        Command::Info { model: None } => info(),
        Command::Info { model: Some(path) } => describe(&path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atrous: {e}");
            ExitCode::FAILURE
        }
    }
}

mod bench;
mod segment;
mod tiles;

/// A model in the portable format (metadata key `atrous`), or a PyTorch state_dict built by the zoo: the
/// architecture from `--arch`, else the file's metadata `architecture`, else the key names.
fn load_model(path: &Path, arch: Option<&str>) -> Result<Model> {
    models::open(path, arch)
}

/// Reads each graph input's tensor, checking its shape against the model and its size against the device's largest
/// storage binding (`max_bytes`) from the file's header before any data is read or converted.
fn read_inputs(model: &Model, path: &Path, max_bytes: u64) -> Result<Vec<(String, Tensor)>> {
    let file = Weights::open(path)?;
    let in_file = |message: String| Error::File {
        path: path.to_path_buf(),
        message,
    };
    let single = model.graph.inputs.len() == 1;
    model
        .graph
        .inputs
        .iter()
        .map(|input| {
            let name = if single && !file.contains(&input.name) {
                "input"
            } else {
                input.name.as_str()
            };
            let shape = file.shape(name).ok_or_else(|| {
                let names = file.names();
                in_file(format!(
                    "no tensor {name:?} for graph input {:?} (the file holds {})",
                    input.name,
                    if names.is_empty() { "no tensors".to_string() } else { names.join(", ") }
                ))
            })?;
            let [n, c, h, w] = shape[..] else {
                return Err(in_file(format!("tensor {name:?} has shape {shape:?}; expected 4-D NCHW")));
            };
            if c != input.channels {
                return Err(in_file(format!(
                    "tensor {name:?} has shape {shape:?}; graph input {:?} takes {} channels",
                    input.name, input.channels
                )));
            }
            let bytes = Shape::new(n, c, h, w).bytes();
            if bytes > max_bytes {
                return Err(in_file(format!(
                    "tensor {name:?} of shape {shape:?} needs {bytes} bytes as f32, over the device's largest \
                     storage binding ({max_bytes} bytes)"
                )));
            }
            // Converted only now: a wrong dtype (f64, i64) is named by the conversion.
            let t = file.get(name).map_err(|e| in_file(e.to_string()))?;
            Ok((input.name.clone(), Tensor::new(Shape::new(n, c, h, w), t.data)?))
        })
        .collect()
}

/// `path` with every link resolved, for telling whether two paths name one file: the canonical path where it exists,
/// else its parent's resolved path joined with its name (so a file not yet written resolves too).
pub(crate) fn resolve_path(path: &Path) -> PathBuf {
    if let Ok(canonical) = path.canonicalize() {
        return canonical;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            resolve_path(parent).join(name)
        }
        (Some(_), Some(name)) => resolve_path(Path::new(".")).join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Refuses an `--output` that would overwrite the `--input` or the `--model` (or a file inside a model folder).
fn check_output(output: &Path, input: &Path, model: &Path) -> Result<()> {
    let target = resolve_path(output);
    let refuse = |what: &str, path: &Path| Error::File {
        path: output.to_path_buf(),
        message: format!(
            "--output is {what} {}; refusing to overwrite it",
            path.display()
        ),
    };
    if target == resolve_path(input) {
        return Err(refuse("the same file as --input", input));
    }
    let model_target = resolve_path(model);
    if target == model_target {
        return Err(refuse("the same file as --model", model));
    }
    if model.is_dir() && target.starts_with(&model_target) && target.exists() {
        return Err(refuse("a file of the --model folder", model));
    }
    Ok(())
}

fn run(
    model_path: &Path,
    arch: Option<&str>,
    input: &Path,
    output: &Path,
    numerics: Numerics,
) -> Result<()> {
    check_output(output, input, model_path)?;
    let model = load_model(model_path, arch)?;
    let gpu = Arc::new(Gpu::new()?);
    let inputs = read_inputs(&model, input, gpu.limits().max_storage_buffer_binding_size)?;
    let outputs: Vec<String> = model.graph.outputs.clone();
    let options = numerics.options();
    let engine = Engine::with_options(gpu, model, options);
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let results = engine.run(&refs, &names)?;
    let mut file = Weights::new();
    for name in &outputs {
        let t = results[name].to_f32();
        file.insert(name.clone(), t.shape.dims().to_vec(), t.data)?;
    }
    // Through a temporary file renamed into place: a failed write leaves no partial file (and any earlier one intact).
    StagedFile::write_to_path(output, |temp| file.save(temp, HashMap::new()))?.commit()
}

/// `atrous info --model`: what a model file holds, without a GPU. An ONNX file's unsupported nodes are listed
/// rather than refused, so the report is complete.
fn describe(path: &Path) -> Result<()> {
    if atrous::onnx::is_onnx_path(path) {
        let mut weights = atrous::weights::Weights::new();
        let onnx = atrous::onnx::OnnxGraph::open(path, &mut weights)?;
        println!(
            "ONNX model {} (opset {}, producer {:?})",
            path.display(),
            onnx.opset(),
            onnx.producer
        );
        for i in &onnx.inputs {
            let dims: Vec<String> = i
                .dims
                .iter()
                .map(|d| d.map_or("?".into(), |v| v.to_string()))
                .collect();
            println!("input  {:?}: [{}]", i.name, dims.join(", "));
        }
        for o in &onnx.outputs {
            println!("output {o:?}");
        }
        println!("weights: {} tensors", weights.names().len());
        println!("ops:");
        for (op, count) in onnx.histogram() {
            println!("  {op:<24} {count}");
        }
        let unsupported = onnx.unsupported();
        if unsupported.is_empty() {
            match onnx
                .probe_shapes()
                .and_then(|s| onnx.translate(&s, atrous::onnx::Constants::Add(&mut weights)))
            {
                Ok(graph) => println!(
                    "translates into {} atrous nodes at its declared (or probe) input size",
                    graph.nodes.len()
                ),
                Err(e) => println!("cannot be translated: {e}"),
            }
        } else {
            println!("unsupported: {}", unsupported.join(", "));
        }
        return Ok(());
    }
    let model = load_model(path, None)?;
    println!("model {}", path.display());
    for i in &model.graph.inputs {
        println!("input  {:?}: {} channels", i.name, i.channels);
    }
    for o in &model.graph.outputs {
        println!("output {o:?}");
    }
    let mut ops = std::collections::BTreeMap::new();
    for n in &model.graph.nodes {
        *ops.entry(n.op.name()).or_insert(0usize) += 1;
    }
    println!("ops:");
    for (op, count) in ops {
        println!("  {op:<24} {count}");
    }
    Ok(())
}

fn info() -> Result<()> {
    let adapters = Gpu::adapters();
    if adapters.is_empty() {
        return Err(Error::NoAdapter {
            detail: String::new(),
        });
    }
    println!("adapters (best first):");
    for a in &adapters {
        println!(
            "  {} [driver: {} {}]",
            a.describe(),
            a.info.driver,
            a.info.driver_info
        );
    }
    let gpu = Gpu::new()?;
    println!("chosen: {}", gpu.describe());
    println!("features: {:?}", gpu.features());
    let l = gpu.limits();
    println!("limits:");
    for (name, value) in [
        ("max_buffer_size", l.max_buffer_size),
        (
            "max_storage_buffer_binding_size",
            l.max_storage_buffer_binding_size,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size as u64,
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension as u64,
        ),
    ] {
        println!("  {name}: {value}");
    }
    Ok(())
}
