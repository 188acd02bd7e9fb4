//! The main job: a photo in, a class map (and optionally probabilities) at the photo's own size out. One GPU
//! submission per image: preprocessing, the model, resizing the logits back and the argmax all run on the GPU.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gpu::{BoundKernel, Gpu};
use crate::image_io::default_palette;
use crate::kernels::{preprocess, resize, softmax};
use crate::model::{InputSize, Model, PreprocessSpec};
use crate::ops::{ImageLayout, Preprocess, Resize, ResizeMode, ResizeTarget, Softmax};
use crate::plan::{Plan, PlanOptions, Readback, Upload};
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

/// Everything compiled for one image size: the model's plan plus the kernels around it and their buffers.
struct SizedPipeline {
    plan: Arc<Plan>,
    image: wgpu::Buffer,
    before: Vec<BoundKernel>,
    after: Vec<BoundKernel>,
    /// The logits (or a one-channel model's probability) resized to the image.
    resized: wgpu::Buffer,
    classes: wgpu::Buffer,
    classes_staging: wgpu::Buffer,
    probabilities: Option<Probabilities>,
}

struct Probabilities {
    /// The softmax output; `None` for a one-channel model, whose resized output is the probability.
    softmax: Option<wgpu::Buffer>,
    staging: wgpu::Buffer,
}

/// A model ready to segment images of any size. Thread-safe; compiled once per image size and cached.
pub struct Segmenter {
    engine: Engine,
    spec: PreprocessSpec,
    class_count: usize,
    labels: Vec<String>,
    palette: Vec<[u8; 3]>,
    /// The graph output holding the logits.
    output: String,
    pipelines: Mutex<HashMap<(u32, u32, bool), Arc<SizedPipeline>>>,
}

impl Segmenter {
    /// Wraps a model whose metadata says how to preprocess images and whose graph has the output `out` (or one
    /// output of any name).
    pub fn new(gpu: Arc<Gpu>, model: Model) -> Result<Self> {
        Self::with_options(gpu, model, PlanOptions::default())
    }

    /// [`Segmenter::new`] with plan options; the kernels around the model (preprocessing, resize, argmax) follow
    /// its precision.
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
        if model.graph.inputs.len() != 1 || model.graph.inputs[0].channels != 3 {
            return Err(Error::Model(
                "a segmentation model needs exactly one 3-channel input".into(),
            ));
        }
        // The class count comes from a tiny shape inference at the model's nominal size.
        let probe = input_size(&spec.input_size, 64, 64);
        let shapes = HashMap::from([(
            model.graph.inputs[0].name.clone(),
            Shape::new(1, 3, probe.0, probe.1),
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
        Ok(Segmenter {
            engine: Engine::with_options(gpu, model, options),
            spec,
            class_count,
            labels,
            palette,
            output,
            pipelines: Mutex::default(),
        })
    }

    /// Class names, by index. A one-channel model has two: background and the foreground.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn palette(&self) -> &[[u8; 3]] {
        &self.palette
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Segments one image; with `probabilities`, also reads back the class probabilities.
    pub fn segment(&self, image: &RgbaImage, probabilities: bool) -> Result<Segmentation> {
        let (width, height) = image.dimensions();
        let key = (width, height, probabilities);
        let cached = self
            .pipelines
            .lock()
            .expect("pipeline cache poisoned")
            .get(&key)
            .cloned();
        let pipeline = match cached {
            Some(p) => p,
            None => {
                let p = Arc::new(self.compile(width as usize, height as usize, probabilities)?);
                self.pipelines
                    .lock()
                    .expect("pipeline cache poisoned")
                    .insert(key, p.clone());
                p
            }
        };
        let pixels = (width * height) as u64;
        let mut readbacks = vec![Readback {
            source: &pipeline.classes,
            offset: 0,
            staging: &pipeline.classes_staging,
            bytes: 4 * pixels,
        }];
        if let Some(p) = &pipeline.probabilities {
            let source = p.softmax.as_ref().unwrap_or(&pipeline.resized);
            readbacks.push(Readback {
                source,
                offset: 0,
                staging: &p.staging,
                bytes: p.staging.size(),
            });
        }
        let before: Vec<&BoundKernel> = pipeline.before.iter().collect();
        let after: Vec<&BoundKernel> = pipeline.after.iter().collect();
        let data = pipeline.plan.submit(
            &[Upload {
                target: &pipeline.image,
                offset: 0,
                bytes: image.as_raw(),
            }],
            &before,
            &after,
            &readbacks,
        )?;
        let classes = bytemuck::pod_collect_to_vec(&data[0]);
        let shape = Shape::new(1, self.class_count, height as usize, width as usize);
        let probabilities = data.get(1).map(|bytes| Tensor {
            shape,
            data: pipeline.plan.precision().decode(bytes, shape.numel()),
        });
        Ok(Segmentation {
            width: width as usize,
            height: height as usize,
            classes,
            probabilities,
        })
    }

    fn compile(&self, width: usize, height: usize, probabilities: bool) -> Result<SizedPipeline> {
        let gpu = self.engine.gpu();
        let full = Shape::new(1, self.class_count, height, width);
        let precision = self.engine.options().precision;
        let full_bytes = precision.storage_bytes(full.numel());
        if let Err(Error::TooLarge {
            size,
            limit,
            limit_name,
            ..
        }) = gpu.check_storage_size("", full_bytes)
        {
            let fit = ((limit as f64 / size as f64).sqrt() * 0.99).min(1.0);
            let what = format!(
                "a {width}x{height} image with {} class maps at full size (downscale it to about {}x{} to fit)",
                self.class_count,
                (width as f64 * fit) as usize,
                (height as f64 * fit) as usize
            );
            return Err(Error::TooLarge {
                what,
                size,
                limit_name,
                limit,
            });
        }
        let (in_h, in_w) = input_size(&self.spec.input_size, height, width);
        let input_name = self.engine.model().graph.inputs[0].name.clone();
        let plan = self
            .engine
            .plan(&[(&input_name, Shape::new(1, 3, in_h, in_w))])?;
        let logits = plan
            .output_info(&self.output)
            .expect("checked in new")
            .shape;

        let layout = ImageLayout {
            width,
            height,
            channels: 4,
        };
        let [lo, hi] = self.spec.value_range;
        let pre = Preprocess {
            size: [in_h, in_w],
            mean: self.spec.mean.map(|m| m - lo),
            std: self.spec.std,
            value_scale: (hi - lo) / 255.0,
            channel_order: self.spec.channel_order,
        };
        let image = gpu.storage_buffer("image", 4 * preprocess::image_words(layout) as u64)?;
        let pre_kernel = preprocess::preprocess(gpu, "preprocess", &pre, layout, precision)?;
        let input = plan.binding(&input_name).expect("graph input");
        let before = vec![pre_kernel.bind(gpu, &[input], &[image.as_entire_buffer_binding()])?];

        let resized = gpu.storage_buffer("logits at image size", full_bytes)?;
        let resize = Resize {
            mode: ResizeMode::Bilinear {
                align_corners: false,
            },
            target: ResizeTarget::Size([height, width]),
        };
        let resize_kernel = resize::resize(gpu, "resize logits", &resize, logits, precision)?;
        let out = plan.binding(&self.output).expect("graph output");
        let mut after =
            vec![resize_kernel.bind(gpu, &[resized.as_entire_buffer_binding()], &[out])?];
        let class_shape = full.with_c(1);
        let classes = gpu.storage_buffer("classes", class_shape.bytes())?;
        let class_kernel = match self.class_count {
            1 => softmax::threshold(gpu, "mask", full, PROBABILITY_THRESHOLD, precision)?,
            _ => softmax::argmax(gpu, "argmax", &crate::ops::Argmax, full, precision)?,
        };
        after.push(class_kernel.bind(
            gpu,
            &[classes.as_entire_buffer_binding()],
            &[resized.as_entire_buffer_binding()],
        )?);
        let staging = |label: &str, bytes: u64| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let classes_staging = staging("classes readback", class_shape.bytes());
        let probabilities = match probabilities {
            false => None,
            true => {
                let softmax = match self.class_count {
                    1 => None,
                    _ => {
                        let probs = gpu.storage_buffer("probabilities", full_bytes)?;
                        let kernel = softmax::softmax(gpu, "softmax", &Softmax, full, precision)?;
                        let (o, i) = (
                            probs.as_entire_buffer_binding(),
                            resized.as_entire_buffer_binding(),
                        );
                        after.push(kernel.bind(gpu, &[o], &[i])?);
                        Some(probs)
                    }
                };
                Some(Probabilities {
                    softmax,
                    staging: staging("probabilities readback", full_bytes),
                })
            }
        };
        Ok(SizedPipeline {
            plan,
            image,
            before,
            after,
            resized,
            classes,
            classes_staging,
            probabilities,
        })
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
