//! The main job: an image or a frame in, a class map (and optionally probabilities, colours, a soft mask) out. One
//! GPU submission per frame: preprocessing, the model, resizing the logits back, softmax and argmax are nodes of
//! one graph compiled into one plan, whether the frame comes from host memory or from a texture, and whether the
//! results are read back or stay on the GPU in the application's textures and buffers.
//!
//! # Embedding in a real-time application
//!
//! Create the device with what atrous needs ([`crate::gpu::required_features`], [`crate::gpu::required_limits`],
//! and whichever [`crate::gpu::optional_features`] the adapter has), wrap it with [`Gpu::from_device`], make a
//! [`Segmenter`] once and a [`Stream`] per render loop. Each frame records into the application's encoder: the
//! frame is read from the application's texture, the outputs are written into its textures, and nothing waits on
//! the CPU. After the first frame of a given size a frame creates no buffer, texture, bind group or pipeline.
//!
//! ```no_run
//! use atrous::segment::{Frame, Mask, Request, Target};
//! use atrous::{Gpu, Model, Segmenter};
//! use std::sync::Arc;
//!
//! # fn frame(adapter: &wgpu::Adapter, scene: &wgpu::Texture, mask: &wgpu::Texture) -> atrous::Result<()> {
//! let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
//!     required_features: atrous::gpu::required_features()
//!         | (atrous::gpu::optional_features() & adapter.features()),
//!     required_limits: atrous::gpu::required_limits(adapter),
//!     ..Default::default()
//! }))
//! .expect("a device");
//! let gpu = Arc::new(Gpu::from_device(device.clone(), queue.clone(), adapter.get_info())?);
//! let segmenter = Segmenter::new(gpu, Model::load("weights/selfie_segmenter.safetensors")?)?;
//! let mut stream = segmenter.stream();
//!
//! // Every frame: the scene was rendered into `scene` (Rgba8UnormSrgb, TEXTURE_BINDING); the person's probability
//! // goes into `mask` (R16Float, COPY_DST) for the compositing pass that follows in the same encoder.
//! let mut encoder = device.create_command_encoder(&Default::default());
//! let request = Request {
//!     mask: Some(Mask { class: 1, target: Target::Texture(mask) }),
//!     ..Default::default()
//! };
//! let recorded = stream.record(&mut encoder, Frame::Texture { texture: scene, region: None }, &request)?;
//! // ... the application's compositing pass samples `mask` here ...
//! queue.submit([encoder.finish()]);
//! let _readback = recorded.submitted(); // None: nothing was asked to come back to the host
//! # Ok(())
//! # }
//! ```
//!
//! A readback, when asked for ([`Request::readback`]), is a future ([`FrameReadback`]) that resolves once the GPU
//! is done and the device has been polled; nothing in this path blocks or starts a thread, which keeps the way open
//! to WebGPU in browsers (wasm32), where polling is implicit. [`Segmenter::segment`] and [`FrameReadback::wait`]
//! are the blocking conveniences for command-line tools.

mod graph;
mod request;
mod stream;

pub use request::{Frame, Mask, Readback, Region, Request, Resolution, Target};
pub use stream::{FrameReadback, Recorded, Stream, Submitted};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::image_io::default_palette;
use crate::model::{InputSize, Model, PreprocessSpec};
use crate::plan::PlanOptions;
use crate::tensor::{Shape, Tensor};
use image::RgbaImage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The graph output a segmenter reads: the logits (or, for one channel, the probability) named `out`.
pub const OUTPUT: &str = "out";

/// A one-channel output is a probability; the mask is where it exceeds this.
pub const PROBABILITY_THRESHOLD: f32 = 0.5;

/// The result for one image, at the image's size.
#[derive(Clone, Debug)]
pub struct Segmentation {
    pub width: usize,
    pub height: usize,
    /// Class index per pixel, row-major.
    pub classes: Vec<u32>,
    /// `1 x C x H x W` class probabilities (softmax of the logits; for one-channel models the model's own output),
    /// when asked for.
    pub probabilities: Option<Tensor>,
}

impl Segmentation {
    /// The share of pixels of each class, for `class_count` classes.
    pub fn shares(&self, class_count: usize) -> Vec<f64> {
        let mut counts = vec![0usize; class_count];
        for &c in &self.classes {
            if let Some(n) = counts.get_mut(c as usize) {
                *n += 1;
            }
        }
        counts
            .iter()
            .map(|&n| n as f64 / self.classes.len().max(1) as f64)
            .collect()
    }
}

/// What the segmenter's streams share: the model and its weights, the preprocessing and labels, and the compiled
/// plans, one per kind of frame (source, size, outputs).
pub(crate) struct Shared {
    engine: Engine,
    spec: PreprocessSpec,
    class_count: usize,
    palette: Vec<[u8; 3]>,
    /// The graph output holding the logits.
    output: String,
    plans: Mutex<HashMap<graph::Key, Arc<graph::Compiled>>>,
}

impl Shared {
    /// The compiled plan of `key`, compiled on first use (outside the lock, so other kinds of frames run meanwhile).
    fn compiled(&self, key: &graph::Key) -> Result<Arc<graph::Compiled>> {
        if let Some(c) = self.plans.lock().expect("plan cache poisoned").get(key) {
            return Ok(c.clone());
        }
        let compiled = Arc::new(graph::compile(self, key)?);
        Ok(self
            .plans
            .lock()
            .expect("plan cache poisoned")
            .entry(key.clone())
            .or_insert(compiled)
            .clone())
    }

    /// Refuses outputs whose class maps at `(width, height)` would not fit one buffer, saying how far to downscale.
    fn check_output_size(&self, (width, height): (usize, usize)) -> Result<()> {
        let gpu = self.engine.gpu();
        let full = Shape::new(1, self.class_count, height, width);
        let bytes = self.engine.options().precision.storage_bytes(full.numel());
        match gpu.check_storage_size("", bytes) {
            Err(Error::TooLarge {
                size,
                limit,
                limit_name,
                ..
            }) => {
                let fit = ((limit as f64 / size as f64).sqrt() * 0.99).min(1.0);
                let what = format!(
                    "a {width}x{height} image with {} class maps at full size (downscale it to about {}x{} to fit)",
                    self.class_count,
                    (width as f64 * fit) as usize,
                    (height as f64 * fit) as usize
                );
                Err(Error::TooLarge {
                    what,
                    size,
                    limit_name,
                    limit,
                })
            }
            other => other,
        }
    }
}

/// A model ready to segment images and frames of any size: the model's graph with preprocessing and postprocessing
/// as graph nodes, compiled once per kind of frame and shared. Thread-safe. [`Segmenter::segment`] is the blocking
/// convenience; [`Segmenter::stream`] gives a real-time application frames that stay on the GPU.
pub struct Segmenter {
    shared: Arc<Shared>,
    labels: Vec<String>,
    /// Streams [`Segmenter::segment`] reuses, one per concurrent call.
    idle: Mutex<Vec<Stream>>,
}

impl Segmenter {
    /// Wraps a model whose metadata says how to preprocess images and whose graph has the output `out` (or one
    /// output of any name).
    pub fn new(gpu: Arc<Gpu>, model: Model) -> Result<Self> {
        Self::with_options(gpu, model, PlanOptions::default())
    }

    /// [`Segmenter::new`] with plan options; preprocessing and postprocessing follow its precision.
    pub fn with_options(gpu: Arc<Gpu>, model: Model, options: PlanOptions) -> Result<Self> {
        gpu.require(options.precision)?;
        let spec = model.info.preprocess.clone().ok_or_else(|| {
            Error::Model("the model has no preprocessing metadata (mean, std, input size): cannot segment images; give them (atrous segment --mean, --std, --size) or store them in the model (an ONNX file's metadata_props atrous.mean, atrous.std, atrous.size)".into())
        })?;
        // The output `out` (the zoo's and the portable format's convention), else the model's only output.
        let output = match &model.graph.outputs[..] {
            outs if outs.iter().any(|o| o == OUTPUT) => OUTPUT.to_string(),
            [only] => only.clone(),
            outs => {
                return Err(Error::Model(format!(
                    "the model has no output {OUTPUT:?} to segment with, and {} outputs ({}) to choose from",
                    outs.len(),
                    outs.join(", ")
                )))
            }
        };
        // Any channel count: three-channel models take images and textures, any model takes Frame::Bands.
        if model.graph.inputs.len() != 1 || model.graph.inputs[0].channels == 0 {
            return Err(Error::Model(
                "a segmentation model needs exactly one input with at least one channel".into(),
            ));
        }
        let channels = model.graph.inputs[0].channels;
        if let Some(bands) = &spec.bands {
            if bands.mean.len() != channels || bands.std.len() != channels {
                return Err(Error::Model(format!(
                    "the model takes {channels} input channels; its band mean and std have {} and {} values",
                    bands.mean.len(),
                    bands.std.len()
                )));
            }
            crate::ops::Normalize::output_shape(bands, Shape::new(1, channels, 1, 1))?;
        }
        // The class count comes from a tiny shape inference at the model's nominal size.
        let probe = input_size(&spec.input_size, 64, 64);
        let shapes = HashMap::from([(
            model.graph.inputs[0].name.clone(),
            Shape::new(1, channels, probe.0, probe.1),
        )]);
        let (_, infos) = model.graph_for(&shapes)?.infer(&shapes)?;
        let class_count = infos[&output].shape.c;
        let labels = match model.info.labels.len() {
            n if n == class_count.max(2) => model.info.labels.clone(),
            _ => (0..class_count.max(2))
                .map(|c| format!("class {c}"))
                .collect(),
        };
        let palette = match model.info.palette.len() {
            n if n >= labels.len() => model.info.palette.clone(),
            _ => default_palette(labels.len()),
        };
        let shared = Shared {
            engine: Engine::with_options(gpu, model, options),
            spec,
            class_count,
            palette,
            output,
            plans: Mutex::default(),
        };
        Ok(Segmenter {
            shared: Arc::new(shared),
            labels,
            idle: Mutex::default(),
        })
    }

    /// Class names, by index. A one-channel model has two: background and the foreground.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn palette(&self) -> &[[u8; 3]] {
        &self.shared.palette
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Channels of the model's output: the class count, or 1 for a model that outputs one probability.
    pub fn class_count(&self) -> usize {
        self.shared.class_count
    }

    /// The model's input channel count: 3 for models that take images, any count for [`Frame::Bands`].
    pub fn input_channels(&self) -> usize {
        self.shared.engine.model().graph.inputs[0].channels
    }

    /// The model's preprocessing (input size policy, mean and std, per-band normalisation).
    pub fn preprocess_spec(&self) -> &PreprocessSpec {
        &self.shared.spec
    }

    /// A new stream: run state of its own for frames in flight (see [`Stream`]). Keep one per render loop, thread
    /// or frame in flight; it is reused frame after frame.
    pub fn stream(&self) -> Stream {
        Stream::new(self.shared.clone())
    }

    /// Segments one image and blocks until the class map (and with `probabilities`, the class probabilities) is
    /// read back, at the image's size.
    pub fn segment(&self, image: &RgbaImage, probabilities: bool) -> Result<Segmentation> {
        let idle = self.idle.lock().expect("stream pool poisoned").pop();
        let mut stream = idle.unwrap_or_else(|| self.stream());
        let request = Request {
            readback: Some(match probabilities {
                false => Readback::Classes,
                true => Readback::ClassesAndProbabilities,
            }),
            ..Default::default()
        };
        let result = stream
            .submit(Frame::Image(image), &request)
            .and_then(|s| s.readback.expect("a readback was asked for").wait());
        self.idle.lock().expect("stream pool poisoned").push(stream);
        result
    }
}

/// The model input size for an image of `height x width` under the model's policy.
pub fn input_size(policy: &InputSize, height: usize, width: usize) -> (usize, usize) {
    match *policy {
        InputSize::Fixed { height, width } => (height, width),
        InputSize::ShorterSide { size } => {
            let scale = size as f64 / height.min(width) as f64;
            (
                ((height as f64 * scale).round() as usize).max(1),
                ((width as f64 * scale).round() as usize).max(1),
            )
        }
        InputSize::Original { multiple_of } => {
            let m = multiple_of.max(1);
            (height.div_ceil(m) * m, width.div_ceil(m) * m)
        }
    }
}
