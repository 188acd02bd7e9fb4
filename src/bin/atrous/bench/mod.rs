//! `atrous bench`: latency, throughput, planned memory and a per-kernel table from GPU timestamps, for a model or for
//! a single op.

mod frame;

use super::{load_model, Numerics};
use atrous::graph::GraphBuilder;
use atrous::ops::{Conv2d, ConvTranspose2d, ConvWeights, Padding2d};
use atrous::plan::{ChoiceSource, KernelTime, Plan, PlanOptions};
use atrous::{Engine, Error, Gpu, Model, Result, Shape, Tensor};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A model (atrous format) to time; default: the shipped selfie segmenter. Or use --op.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    arch: Option<String>,
    /// A single op to time instead of a model: conv2d, conv_transpose2d, or dw_pointwise (a depthwise conv of
    /// --in-channels with --kernel, --stride, --dilation, then a 1 x 1 conv to --out-channels: one fused kernel, or
    /// two with --no-fuse).
    #[arg(long, conflicts_with = "model")]
    op: Option<String>,
    /// Input height x width, e.g. 520x520 (default: the model's own size, or 65x65 for --op).
    #[arg(long)]
    size: Option<String>,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed runs (after the warm-up runs).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Compile the plan and report its dispatches and activation memory without running it.
    #[arg(long)]
    plan_only: bool,
    /// Compile without epilogue fusion.
    #[arg(long)]
    no_fuse: bool,
    #[command(flatten)]
    numerics: Numerics,
    /// Choose kernels as for an adapter running this many threads at once (default: the adapter's estimate), e.g.
    /// 100000 to see split-K convs on a CPU adapter.
    #[arg(long)]
    parallelism: Option<u64>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Tiled inference over a synthetic scene of --size (HxW, computed on the fly, nothing read from disk): windows
    /// of N x N through the segmentation flow, blended; reports megapixels per second. --batch is then the
    /// windows per submission (as for `segment --tile`).
    #[arg(long, value_name = "N", conflicts_with = "op")]
    tile: Option<usize>,
    /// With --tile: pixels shared by neighbouring windows.
    #[arg(long, default_value_t = 64)]
    overlap: usize,
    /// --op: input channels.
    #[arg(long, default_value_t = 256)]
    in_channels: usize,
    /// --op: output channels.
    #[arg(long, default_value_t = 256)]
    out_channels: usize,
    /// --op: kernel size (square).
    #[arg(long, default_value_t = 3)]
    kernel: usize,
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// --op: padding on every side (default for conv2d: dilation * (kernel - 1) / 2, "same"; for
    /// conv_transpose2d: 0).
    #[arg(long)]
    padding: Option<usize>,
    #[arg(long, default_value_t = 1)]
    dilation: usize,
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Time frames as an application's render loop runs them: a --size frame (default 640x480) segmented from a
    /// texture into a soft-mask texture through a stream, no readback. Reports the CPU time to record and submit
    /// one frame and the frame's latency.
    #[arg(long, conflicts_with = "op")]
    frame: bool,
}

fn parse_size(text: &str) -> Result<[usize; 2]> {
    let bad = || {
        Error::Model(format!(
            "--size {text:?}: expected HEIGHTxWIDTH, e.g. 520x520"
        ))
    };
    let (h, w) = text.split_once('x').ok_or_else(bad)?;
    Ok([
        h.trim().parse().map_err(|_| bad())?,
        w.trim().parse().map_err(|_| bad())?,
    ])
}

/// A one-node model with deterministic pseudo-random weights (never zeros).
fn op_model(args: &BenchArgs, op: &str) -> Result<Model> {
    let k = args.kernel;
    let values = |count: usize| -> Vec<f32> {
        (0..count)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1)
            .collect()
    };
    let weights_of = |count, channels| ConvWeights {
        weight: values(count),
        bias: Some(vec![0.01; channels]),
        batch_norm: None,
    };
    let weights = |count| weights_of(count, args.out_channels);
    // conv2d's default padding: "same" for stride 1.
    let same = Padding2d::uniform(args.padding.unwrap_or(args.dilation * (k.max(1) - 1) / 2));
    let mut b = GraphBuilder::new();
    let x = b.input("input", args.in_channels);
    match op {
        "conv2d" => {
            let p = Conv2d {
                stride: [args.stride; 2],
                padding: same,
                dilation: [args.dilation; 2],
                groups: args.groups,
                ..Conv2d::new(args.in_channels, args.out_channels, [k, k])
            };
            let w = weights(p.weight_shape().iter().product());
            b.conv2d("out", &x, p, w)?;
        }
        "conv_transpose2d" => {
            let p = ConvTranspose2d {
                padding: [args.padding.unwrap_or(0); 2],
                dilation: [args.dilation; 2],
                groups: args.groups,
                ..ConvTranspose2d::new(
                    args.in_channels,
                    args.out_channels,
                    [k, k],
                    [args.stride; 2],
                )
            };
            let w = weights(p.weight_shape().iter().product());
            b.conv_transpose2d("out", &x, p, w)?;
        }
        "dw_pointwise" => {
            let c = args.in_channels;
            let dw = Conv2d {
                stride: [args.stride; 2],
                padding: same,
                dilation: [args.dilation; 2],
                groups: c,
                ..Conv2d::new(c, c, [k, k])
            };
            let w = weights_of(dw.weight_shape().iter().product(), c);
            let d = b.conv2d("depthwise", &x, dw, w)?;
            let pw = Conv2d::new(c, args.out_channels, [1, 1]);
            let w = weights(pw.weight_shape().iter().product());
            b.conv2d("out", &d, pw, w)?;
        }
        _ => {
            return Err(Error::Model(format!(
                "--op {op}: supported ops: conv2d, conv_transpose2d, dw_pointwise"
            )))
        }
    }
    b.finish(&["out"])
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.frame {
        return frame::run(args);
    }
    if let Some(tile) = args.tile {
        return bench_tiles(args, tile);
    }
    let (model, name) = match (&args.model, &args.op) {
        (Some(path), _) => (
            load_model(path, args.arch.as_deref())?,
            path.display().to_string(),
        ),
        (None, Some(op)) => (op_model(args, op)?, format!("--op {op}")),
        (None, None) => {
            let path = super::segment::default_model();
            (load_model(&path, None)?, path.display().to_string())
        }
    };
    let [h, w] = match (&args.size, &model.info.preprocess, &args.op) {
        (Some(s), _, _) => parse_size(s)?,
        (None, Some(spec), _) => {
            let (h, w) = atrous::segment::input_size(&spec.input_size, 520, 520);
            [h, w]
        }
        (None, None, Some(_)) => [65, 65],
        (None, None, None) => [520, 520],
    };
    let input = &model.graph.inputs[0];
    let shape = Shape::new(args.batch.max(1), input.channels, h, w);
    let input_name = input.name.clone();
    let outputs: Vec<String> = match model.graph.outputs.iter().any(|o| o == "out") {
        true => vec!["out".to_string()],
        false => model.graph.outputs.clone(),
    };
    let gpu = Arc::new(Gpu::new()?);
    let adapter = gpu.describe();
    let engine = Engine::with_options(
        gpu,
        model,
        PlanOptions {
            fuse: !args.no_fuse,
            parallelism: args.parallelism,
            ..args.numerics.options()
        },
    );
    let plan = engine.plan(&[(&input_name, shape)])?;
    if args.plan_only {
        let m = plan.memory();
        match args.json {
            true => println!(
                "{}",
                serde_json::json!({
                    "model": name, "adapter": adapter, "input": shape.dims(), "dispatches": plan.dispatches(),
                    "memory": { "planned_bytes": m.planned_bytes, "lower_bound_bytes": m.lower_bound_bytes, "buffers": m.buffers },
                })
            ),
            false => print!("{name} on {adapter}\n{}", plan_summary(&plan, shape)),
        }
        return Ok(());
    }
    let x = Tensor {
        shape,
        data: (0..shape.numel())
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 500.0 - 1.0)
            .collect(),
    };
    let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
    for _ in 0..args.warmup {
        plan.run(&[(&input_name, &x)], &names)?;
    }
    let mut times = Vec::with_capacity(args.iters.max(1));
    for _ in 0..args.iters.max(1) {
        let start = Instant::now();
        plan.run(&[(&input_name, &x)], &names)?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let kernels = match plan.can_profile() {
        true => Some(plan.profile(&[(&input_name, &x)])?),
        false => None,
    };
    let report = Report {
        name,
        adapter,
        shape,
        plan: &plan,
        times,
        kernels,
    };
    match args.json {
        true => println!("{}", report.json()),
        false => print!("{}", report.text()),
    }
    Ok(())
}

/// One line: the input, the dispatch count and the planned activation memory against its lower bound.
fn plan_summary(plan: &Plan, shape: Shape) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let m = plan.memory();
    format!(
        "input {shape}, {} dispatches, activation memory {:.1} MiB planned in {} buffers (lower bound {:.1} MiB, {:.2}x)\n",
        plan.dispatches(),
        mib(m.planned_bytes),
        m.buffers,
        mib(m.lower_bound_bytes),
        m.planned_bytes as f64 / m.lower_bound_bytes.max(1) as f64
    )
}

/// What a tuned plan chose for each conv, and the candidates' times where it measured them now (`--tune`); one
/// line saying the heuristics chose where nothing was tuned.
fn conv_choices_text(plan: &Plan) -> String {
    let choices = plan.conv_choices();
    if choices.iter().all(|c| c.source == ChoiceSource::Heuristic) {
        return format!(
            "conv kernels: {} chosen by the shape heuristics (--tune to measure)\n",
            choices.len()
        );
    }
    let count = |source: ChoiceSource| choices.iter().filter(|c| c.source == source).count();
    let (cached, single) = (count(ChoiceSource::Cached), count(ChoiceSource::Heuristic));
    let mut t = format!(
        "conv kernels, tuned ({} measured now, {cached} from the cache, {single} with one candidate):\n  \
         {:<36} {:<26} {}\n",
        choices.len() - cached - single,
        "node",
        "kernel",
        "how (candidates: ms per run)"
    );
    for c in choices {
        let how = match &c.source {
            ChoiceSource::Heuristic => "one candidate".to_string(),
            ChoiceSource::Cached => "cached".to_string(),
            ChoiceSource::Measured(times) => times
                .iter()
                .map(|(p, s)| format!("{p}: {:.3}", s * 1e3))
                .collect::<Vec<_>>()
                .join(", "),
        };
        t += &format!("  {:<36} {:<26} {how}\n", c.node, c.path.to_string());
    }
    t
}

fn conv_choices_json(plan: &Plan) -> serde_json::Value {
    plan.conv_choices()
        .iter()
        .map(|c| {
            let (source, times) = match &c.source {
                ChoiceSource::Heuristic => ("heuristic", None),
                ChoiceSource::Cached => ("cached", None),
                ChoiceSource::Measured(times) => ("measured", Some(times)),
            };
            serde_json::json!({
                "node": c.node, "key": c.key, "kernel": c.path.to_string(), "source": source,
                "candidates": times.map(|ts| ts.iter().map(|(p, s)| serde_json::json!({
                    "kernel": p.to_string(), "ms": s * 1e3,
                })).collect::<Vec<_>>()),
            })
        })
        .collect()
}

struct Report<'a> {
    name: String,
    adapter: String,
    shape: Shape,
    plan: &'a Plan,
    times: Vec<f64>,
    kernels: Option<Vec<KernelTime>>,
}

impl Report<'_> {
    fn flops(&self) -> u64 {
        self.plan.kernels().map(|k| k.flops()).sum()
    }

    fn json(&self) -> serde_json::Value {
        let m = self.plan.memory();
        let med = median(&self.times);
        serde_json::json!({
            "model": self.name,
            "adapter": self.adapter,
            "precision": self.plan.precision().name(),
            "f16_math": self.plan.f16_math(),
            "input": self.shape.dims(),
            "dispatches": self.plan.dispatches(),
            "latency_ms": { "median": med * 1e3, "min": self.times[0] * 1e3, "max": self.times[self.times.len() - 1] * 1e3 },
            "runs": self.times.len(),
            "images_per_second": self.shape.n as f64 / med,
            "gflop": self.flops() as f64 * 1e-9,
            "gflops_per_second": self.flops() as f64 * 1e-9 / med,
            "memory": { "planned_bytes": m.planned_bytes, "lower_bound_bytes": m.lower_bound_bytes, "buffers": m.buffers },
            "conv_choices": conv_choices_json(self.plan),
            "kernels": self.kernels.as_ref().map(|ks| ks.iter().map(|k| serde_json::json!({
                "kernel": k.label, "ms": k.seconds * 1e3, "flops": k.flops, "bytes": k.bytes,
            })).collect::<Vec<_>>()),
        })
    }

    fn text(&self) -> String {
        let med = median(&self.times);
        let math = match self.plan.f16_math() {
            true => "f16",
            false => "f32",
        };
        let mut t = format!(
            "{} on {}, {} storage, {math} conv math\n",
            self.name,
            self.adapter,
            self.plan.precision()
        );
        t += &plan_summary(self.plan, self.shape);
        t += &conv_choices_text(self.plan);
        t += &format!(
            "latency over {} runs (upload, one submit, readback): median {:.2} ms, min {:.2}, max {:.2}; {:.2} images/s; {:.2} GFLOP at {:.2} GFLOP/s\n",
            self.times.len(),
            med * 1e3,
            self.times[0] * 1e3,
            self.times[self.times.len() - 1] * 1e3,
            self.shape.n as f64 / med,
            self.flops() as f64 * 1e-9,
            self.flops() as f64 * 1e-9 / med
        );
        let Some(kernels) = &self.kernels else {
            return t + "per-kernel times: the adapter has no TIMESTAMP_QUERY_INSIDE_PASSES\n";
        };
        let total: f64 = kernels.iter().map(|k| k.seconds).sum();
        t += &format!(
            "per kernel (GPU timestamps of one run; {:.2} ms in all):\n",
            total * 1e3
        );
        t += &format!(
            "  {:<44} {:>9} {:>7} {:>9} {:>8}\n",
            "kernel", "ms", "share", "GFLOP/s", "GB/s"
        );
        for k in kernels {
            let rate = |x: f64| {
                if k.seconds > 0.0 {
                    x / k.seconds * 1e-9
                } else {
                    0.0
                }
            };
            t += &format!(
                "  {:<44} {:>9.3} {:>6.1}% {:>9.2} {:>8.2}\n",
                k.label,
                k.seconds * 1e3,
                100.0 * k.seconds / total.max(f64::MIN_POSITIVE),
                rate(k.flops as f64),
                rate(k.bytes as f64)
            );
        }
        t
    }
}

/// `--tile`: megapixels per second of tiled inference over a synthetic scene.
fn bench_tiles(args: &BenchArgs, tile: usize) -> Result<()> {
    let path = args
        .model
        .clone()
        .unwrap_or_else(super::segment::default_model);
    let model = load_model(&path, args.arch.as_deref())?;
    let [h, w] = parse_size(args.size.as_deref().unwrap_or("4096x4096"))?;
    let gpu = Arc::new(Gpu::new()?);
    let adapter = gpu.describe();
    let segmenter = atrous::Segmenter::with_options(gpu, model, args.numerics.options())?;
    let channels = segmenter.input_channels();
    let norm = segmenter.preprocess_spec().band_normalize(channels);
    let mut scene = atrous::tiles::SyntheticScene {
        width: w,
        height: h,
        mean: norm.mean.clone(),
        std: norm.std.clone(),
    };
    let mut stream = segmenter.stream();
    let (side, note) =
        atrous::tiles::fit_window(&segmenter, &mut stream, tile, args.overlap, channels)?;
    if let Some(note) = note {
        eprintln!("atrous: {note}");
    }
    let options = atrous::tiles::TileOptions {
        tile: side,
        overlap: args.overlap,
        batch: args.batch.max(1),
        bands: (0..channels).collect(),
        probabilities: false,
        strip: None,
    };
    let stats =
        atrous::tiles::segment_scene(&segmenter, &mut scene, &options, |_| Ok(()), |_, _| {})?;
    let mps = stats.megapixels_per_second(w, h);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": path.display().to_string(), "adapter": adapter, "scene": [h, w],
                "tile": side, "overlap": args.overlap, "batch": options.batch, "windows": stats.windows,
                "grid_windows": stats.grid_windows, "strips": stats.strips,
                "seconds": stats.seconds, "megapixels_per_second": mps, "band_bytes": stats.band_bytes,
            })
        );
    } else {
        println!("model    {}", path.display());
        println!("adapter  {adapter}");
        println!(
            "scene    {h}x{w} synthetic, {channels} bands; windows {side}x{side}, overlap {}, {} per submission: {} \
             windows ({} of the grid, in {} strips)",
            args.overlap, options.batch, stats.windows, stats.grid_windows, stats.strips
        );
        println!(
            "time     {:.2} s, {mps:.3} megapixels/s (blending band {:.1} MiB)",
            stats.seconds,
            stats.band_bytes as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
