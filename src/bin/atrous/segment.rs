//! `atrous segment`: photos in, masks, colour maps and overlays out.

use super::load_model;
use crate::Numerics;
use atrous::image_io::{self, IMAGE_EXTENSIONS};
use atrous::weights::Weights;
use atrous::{Error, Gpu, Result, Segmentation, Segmenter};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The model used when `--model` is omitted, relative to the working directory or to the source tree.
const DEFAULT_MODEL: &str = "weights/selfie_segmenter.safetensors";

/// Suffixes of the files this command writes, skipped when walking a directory for inputs.
const OUTPUT_SUFFIXES: &[&str] = &[".mask.png", ".color.png", ".overlay.png"];

/// Preprocessing and labels for a model that carries none (an ONNX export) or to override its own.
#[derive(clap::Args, Debug, Default)]
pub struct Preprocessing {
    /// Per-channel mean of inputs scaled to [0, 1], e.g. 0.485,0.456,0.406 (ImageNet).
    #[arg(long, value_delimiter = ',', num_args = 3)]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviation, e.g. 0.229,0.224,0.225.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    std: Option<Vec<f32>>,
    /// Input size: the shorter side (e.g. 520), or HxW for a fixed size (e.g. 512x512).
    #[arg(long)]
    size: Option<String>,
    /// A text file with one class name per line.
    #[arg(long)]
    labels: Option<PathBuf>,
}

impl Preprocessing {
    /// Applies the options given to the model's metadata.
    fn apply(&self, model: &mut atrous::Model) -> Result<()> {
        use atrous::model::{InputSize, PreprocessSpec};
        if self.mean.is_some() || self.std.is_some() || self.size.is_some() {
            let mut spec = model.info.preprocess.clone().unwrap_or(PreprocessSpec {
                mean: [0.0; 3],
                std: [1.0; 3],
                value_range: [0.0, 1.0],
                channel_order: Default::default(),
                input_size: match &model.onnx {
                    Some(onnx) => onnx.declared_size(),
                    None => InputSize::Original { multiple_of: 32 },
                },
            });
            let triple = |v: &Vec<f32>| [v[0], v[1], v[2]];
            if let Some(m) = &self.mean {
                spec.mean = triple(m);
            }
            if let Some(s) = &self.std {
                if s.iter().any(|&v| !(v > 0.0)) {
                    return Err(Error::Model(format!(
                        "--std {s:?}: every value must be positive"
                    )));
                }
                spec.std = triple(s);
            }
            if let Some(size) = &self.size {
                let (h, w) = atrous::onnx::parse_size(size)?;
                spec.input_size = if size.contains('x') {
                    InputSize::Fixed {
                        height: h,
                        width: w,
                    }
                } else {
                    InputSize::ShorterSide { size: h }
                };
            }
            model.info.preprocess = Some(spec);
        }
        if let Some(path) = &self.labels {
            let text = std::fs::read_to_string(path).map_err(|e| Error::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            model.info.labels = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
        }
        Ok(())
    }
}

pub fn default_model() -> PathBuf {
    let local = PathBuf::from(DEFAULT_MODEL);
    if local.exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL)
    }
}

fn is_image(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_lowercase();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_lowercase();
    IMAGE_EXTENSIONS.contains(&extension.as_str())
        && !OUTPUT_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The images named, with directories walked (sorted); a directory without images is an error of its own.
fn collect(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<Error>) {
    let (mut images, mut errors) = (Vec::new(), Vec::new());
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(input)
                .sort_by_file_name()
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file() && is_image(e.path()))
                .map(|e| e.into_path())
                .collect();
            if found.is_empty() {
                errors.push(Error::File {
                    path: input.clone(),
                    message: "directory holds no images".into(),
                });
            }
            images.append(&mut found);
        } else {
            images.push(input.clone());
        }
    }
    (images, errors)
}

pub fn run(
    model: Option<&Path>,
    arch: Option<&str>,
    out: &Path,
    probs: bool,
    numerics: Numerics,
    preprocessing: &Preprocessing,
    inputs: &[PathBuf],
) -> Result<()> {
    let (images, mut failures) = collect(inputs);
    for e in &failures {
        eprintln!("atrous: {e}");
    }
    std::fs::create_dir_all(out).map_err(|e| Error::File {
        path: out.to_path_buf(),
        message: format!("cannot create the output directory: {e}"),
    })?;
    let model_path = model.map_or_else(default_model, Path::to_path_buf);
    let options = numerics.options();
    let gpu = Arc::new(Gpu::new()?);
    let mut model = load_model(&model_path, arch)?;
    preprocessing.apply(&mut model)?;
    let segmenter = Segmenter::with_options(gpu, model, options)?;

    let bar = if images.len() > 1 {
        ProgressBar::new(images.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}").expect("valid template"),
    );
    for path in &images {
        bar.set_message(path.display().to_string());
        match segment_one(&segmenter, path, out, probs) {
            Ok(report) => bar.suspend(|| println!("{report}")),
            Err(e) => {
                bar.suspend(|| eprintln!("atrous: {e}"));
                failures.push(e);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    match failures.len() {
        0 => Ok(()),
        n => Err(Error::Model(format!("{n} input(s) failed"))),
    }
}

fn segment_one(segmenter: &Segmenter, path: &Path, out: &Path, probs: bool) -> Result<String> {
    let photo = image_io::load_image(path)?;
    let result = segmenter.segment(&photo, probs).map_err(|e| match e {
        Error::TooLarge { .. } => Error::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
        e => e,
    })?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let file = |suffix: &str| out.join(format!("{stem}{suffix}"));
    let (w, h) = photo.dimensions();
    let labels = segmenter.labels();
    image_io::write_mask(&file(".mask.png"), w, h, &result.classes, labels.len())?;
    image_io::write_color(
        &file(".color.png"),
        w,
        h,
        &result.classes,
        segmenter.palette(),
    )?;
    image_io::write_overlay(
        &file(".overlay.png"),
        &photo,
        &result.classes,
        segmenter.palette(),
    )?;
    if let Some(p) = &result.probabilities {
        let mut t = Weights::new();
        t.insert("probs", p.shape.dims().to_vec(), p.data.clone())?;
        let meta = HashMap::from([("labels".to_string(), labels.join("\n"))]);
        t.save(file(".probs.safetensors"), meta)?;
    }
    Ok(report(path, &result, labels, &file("")))
}

/// "path (WxH) -> out/stem.{mask,color,overlay}.png" and the share of each class present.
fn report(path: &Path, result: &Segmentation, labels: &[String], stem: &Path) -> String {
    let mut text = format!(
        "{} ({}x{}) -> {}.{{mask,color,overlay}}.png",
        path.display(),
        result.width,
        result.height,
        stem.display()
    );
    let width = labels.iter().map(String::len).max().unwrap_or(5).max(5);
    for (label, share) in labels.iter().zip(result.shares(labels.len())) {
        if share > 0.0 {
            text.push_str(&format!("\n  {label:<width$}  {:>6.2}%", 100.0 * share));
        }
    }
    text
}
