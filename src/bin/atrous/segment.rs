//! `atrous segment`: photos in, masks, colour maps and overlays out.

use super::{load_model, resolve_path};
use crate::Numerics;
use atrous::image_io::{self, StagedFile, IMAGE_EXTENSIONS};
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

/// The suffix of the probabilities written with `--probs`.
const PROBS_SUFFIX: &str = ".probs.safetensors";

/// Preprocessing and labels for a model that carries none (an ONNX export) or to override its own.
#[derive(clap::Args, Debug, Default)]
pub struct Preprocessing {
    /// Per-channel mean of inputs scaled to [0, 1], e.g. 0.485,0.456,0.406 (ImageNet).
    #[arg(long, value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviation, e.g. 0.229,0.224,0.225.
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
    /// Input size: the shorter side (e.g. 520), or HxW for a fixed size (e.g. 512x512).
    #[arg(long)]
    size: Option<String>,
    /// A text file with one class name per line.
    #[arg(long)]
    labels: Option<PathBuf>,
}

impl Preprocessing {
    /// For band frames (tiled scenes): `--mean` and `--std` are per band, as many as the model's `channels`, on
    /// the raw values as stored (e.g. reflectance x 10,000); `--size` and `--labels` as for images.
    pub fn apply_bands(&self, model: &mut atrous::Model, channels: usize) -> Result<()> {
        let per_band = Preprocessing {
            mean: None,
            std: None,
            size: self.size.clone(),
            labels: self.labels.clone(),
        };
        per_band.apply(model)?;
        if self.mean.is_none() && self.std.is_none() {
            return Ok(());
        }
        let check = |what: &str, v: &Vec<f32>| -> Result<Vec<f32>> {
            match v.len() == channels {
                true => Ok(v.clone()),
                false => Err(Error::Model(format!(
                    "--{what} has {} values; the model takes {channels} bands",
                    v.len()
                ))),
            }
        };
        let mean = match &self.mean {
            Some(m) => check("mean", m)?,
            None => vec![0.0; channels],
        };
        let std = match &self.std {
            Some(s) if !s.iter().all(|&v| v > 0.0) => {
                return Err(Error::Model(format!(
                    "--std {s:?}: every value must be positive"
                )))
            }
            Some(s) => check("std", s)?,
            None => vec![1.0; channels],
        };
        let spec = model
            .info
            .preprocess
            .get_or_insert_with(|| atrous::model::PreprocessSpec {
                mean: [0.0; 3],
                std: [1.0; 3],
                value_range: [0.0, 1.0],
                channel_order: Default::default(),
                input_size: atrous::model::InputSize::Original { multiple_of: 32 },
                bands: None,
            });
        spec.bands = Some(atrous::ops::Normalize { mean, std });
        Ok(())
    }

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
                bands: None,
            });
            let triple = |what: &str, v: &Vec<f32>| -> Result<[f32; 3]> {
                <[f32; 3]>::try_from(v.as_slice()).map_err(|_| {
                    Error::Model(format!(
                        "--{what} {v:?}: three comma-separated numbers expected (R,G,B)"
                    ))
                })
            };
            if let Some(m) = &self.mean {
                spec.mean = triple("mean", m)?;
            }
            if let Some(s) = &self.std {
                if !s.iter().all(|&v| v > 0.0) {
                    return Err(Error::Model(format!(
                        "--std {s:?}: every value must be positive"
                    )));
                }
                spec.std = triple("std", s)?;
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

/// An image found on the command line or in a walked directory.
struct Found {
    /// As named, or as walked (for messages).
    path: PathBuf,
    /// The directory its output path is taken relative to (canonical): the walked directory, or the file's own.
    root: PathBuf,
    /// Its canonical directory joined with its own name (a symbolic link keeps its name).
    location: PathBuf,
    /// The file itself, links resolved: what "the same file" means.
    canonical: PathBuf,
}

/// The parent directory of `path`, canonical, joined with its file name.
fn canonical_location(path: &Path) -> std::io::Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    Ok(parent.canonicalize()?.join(name))
}

/// What the command line names: the images (directories walked, sorted), and errors for paths that are missing or
/// directories without images, with the number of the latter.
struct Inputs {
    images: Vec<Found>,
    errors: Vec<Error>,
    empty_directories: usize,
}

fn collect(inputs: &[PathBuf]) -> Inputs {
    let mut found = Inputs {
        images: Vec::new(),
        errors: Vec::new(),
        empty_directories: 0,
    };
    let io_error = |path: &Path, e: std::io::Error| Error::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    for input in inputs {
        if input.is_dir() {
            let root = match input.canonicalize() {
                Ok(root) => root,
                Err(e) => {
                    found.errors.push(io_error(input, e));
                    continue;
                }
            };
            let before = found.images.len();
            for entry in walkdir::WalkDir::new(input)
                .sort_by_file_name()
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file() && is_image(e.path()))
            {
                let relative = entry.path().strip_prefix(input).unwrap_or(entry.path());
                let location = root.join(relative);
                found.images.push(Found {
                    canonical: entry.path().canonicalize().unwrap_or(location.clone()),
                    path: entry.into_path(),
                    root: root.clone(),
                    location,
                });
            }
            if found.images.len() == before {
                found.empty_directories += 1;
                found.errors.push(Error::File {
                    path: input.clone(),
                    message: "directory holds no images".into(),
                });
            }
        } else {
            let resolved = input
                .metadata()
                .and_then(|_| Ok((canonical_location(input)?, input.canonicalize()?)));
            match resolved {
                Ok((location, canonical)) => found.images.push(Found {
                    path: input.clone(),
                    root: location.parent().unwrap_or(Path::new("")).to_path_buf(),
                    location,
                    canonical,
                }),
                Err(e) => found.errors.push(io_error(input, e)),
            }
        }
    }
    found
}

/// The deepest directory that holds every one of `dirs`.
fn common_directory(dirs: &[&Path]) -> PathBuf {
    let Some(first) = dirs.first() else {
        return PathBuf::new();
    };
    let mut common: Vec<_> = first.components().collect();
    for dir in &dirs[1..] {
        let shared = common
            .iter()
            .zip(dir.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        common.truncate(shared);
    }
    common.iter().collect()
}

/// One image to segment and the path its outputs start with (`<out>/<relative directory>/<name>`).
struct Job {
    path: PathBuf,
    base: PathBuf,
}

/// The output path (less suffix) of every image, mirroring the inputs' tree under `out`: each image's path relative
/// to the deepest directory holding all the inputs named (a named directory counts itself, a named file its
/// directory; so a lone directory's images are relative to it, a lone file goes straight into `out`), and named by
/// its stem, or by its whole file name where two images of one directory would share a stem (ignoring case, as some
/// file systems do: `x.png` and `X.jpg` too). The same file named twice is segmented once. `Err` for an image whose
/// outputs would still coincide with another's.
fn plan(images: Vec<Found>, out: &Path) -> Vec<Result<Job>> {
    let mut seen = std::collections::HashSet::new();
    let images: Vec<Found> = images
        .into_iter()
        .filter(|f| seen.insert(f.canonical.clone()))
        .collect();
    let roots: Vec<&Path> = images.iter().map(|f| f.root.as_path()).collect();
    let base = common_directory(&roots);
    // Directory (relative, plain components only) and file name of each image.
    let placed: Vec<(PathBuf, &std::ffi::OsStr)> = images
        .iter()
        .map(|f| {
            let relative = f.location.strip_prefix(&base).unwrap_or(&f.location);
            let dir: PathBuf = relative
                .parent()
                .unwrap_or(Path::new(""))
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            (dir, f.location.file_name().unwrap_or_default())
        })
        .collect();
    let mut whole_name = vec![false; images.len()];
    let name = |i: usize, whole: &[bool]| -> PathBuf {
        let (dir, file) = &placed[i];
        let file = Path::new(file);
        match whole[i] {
            true => dir.join(file),
            false => dir.join(file.file_stem().unwrap_or(file.as_os_str())),
        }
    };
    let groups = |whole: &[bool]| {
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for i in 0..images.len() {
            let key = name(i, whole).to_string_lossy().to_lowercase();
            groups.entry(key).or_default().push(i);
        }
        groups
    };
    // Keep whole names where stems collide, until nothing changes (a whole name may meet another's stem).
    loop {
        let mut changed = false;
        for members in groups(&whole_name).values().filter(|m| m.len() > 1) {
            for &i in members {
                changed |= !std::mem::replace(&mut whole_name[i], true);
            }
        }
        if !changed {
            break;
        }
    }
    // Whole names are distinct file names of one directory; this only guards against what links could still make
    // coincide.
    let mut owner: HashMap<PathBuf, usize> = HashMap::new();
    (0..images.len())
        .map(|i| {
            let key = name(i, &whole_name);
            let first = *owner.entry(key).or_insert(i);
            if first != i {
                return Err(Error::File {
                    path: images[i].path.clone(),
                    message: format!(
                        "its outputs would have the same names as those of {}",
                        images[first].path.display()
                    ),
                });
            }
            Ok(Job {
                path: images[i].path.clone(),
                base: out.join(name(i, &whole_name)),
            })
        })
        .collect()
}

/// `base` with `suffix` appended to its file name.
fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The files an image's outputs go to.
fn outputs(base: &Path, probs: bool) -> Vec<PathBuf> {
    let mut suffixes = OUTPUT_SUFFIXES.to_vec();
    if probs {
        suffixes.push(PROBS_SUFFIX);
    }
    suffixes.iter().map(|s| with_suffix(base, s)).collect()
}

/// Refuses a job whose outputs would overwrite one of the `protected` files (canonical path to the path as named:
/// every image, the model, the labels), or the outputs of an earlier job (through links in the output tree).
fn check_outputs(
    job: Result<Job>,
    probs: bool,
    protected: &HashMap<PathBuf, PathBuf>,
    claimed: &mut HashMap<PathBuf, PathBuf>,
) -> Result<Job> {
    let job = job?;
    for output in outputs(&job.base, probs) {
        let target = resolve_path(&output);
        let refuse = |what: String| Error::File {
            path: job.path.clone(),
            message: format!(
                "its output {} would overwrite {what}; nothing written for this image",
                output.display()
            ),
        };
        if let Some(input) = protected.get(&target) {
            return Err(refuse(format!("the input {}", input.display())));
        }
        if let Some(other) = claimed.get(&target) {
            return Err(refuse(format!("the output of {}", other.display())));
        }
    }
    for output in outputs(&job.base, probs) {
        claimed.insert(resolve_path(&output), job.path.clone());
    }
    Ok(job)
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
    let Inputs {
        images,
        errors,
        empty_directories,
    } = collect(inputs);
    let model_path = model.map_or_else(default_model, Path::to_path_buf);
    // Every file read is protected from the outputs, whether it is segmented or not.
    let mut protected: HashMap<PathBuf, PathBuf> = images
        .iter()
        .map(|f| (f.canonical.clone(), f.path.clone()))
        .collect();
    for path in std::iter::once(&model_path).chain(&preprocessing.labels) {
        protected.insert(resolve_path(path), path.clone());
    }
    let missing = errors.len() - empty_directories;
    let batch = images.len() + errors.len() > 1;
    let mut failures = Failures {
        batch,
        count: 0,
        last: None,
    };
    for e in errors {
        failures.add(e);
    }
    let jobs = plan(images, out);
    let total = jobs.len() + missing;
    if !jobs.is_empty() {
        std::fs::create_dir_all(out).map_err(|e| Error::File {
            path: out.to_path_buf(),
            message: format!("cannot create the output directory: {e}"),
        })?;
    }
    let mut claimed = HashMap::new();
    let jobs: Vec<Job> = jobs
        .into_iter()
        .filter_map(
            |job| match check_outputs(job, probs, &protected, &mut claimed) {
                Ok(job) => Some(job),
                Err(e) => {
                    failures.add(e);
                    None
                }
            },
        )
        .collect();

    if !jobs.is_empty() {
        let options = numerics.options();
        let gpu = Arc::new(Gpu::new()?);
        let mut model = load_model(&model_path, arch)?;
        preprocessing.apply(&mut model)?;
        let segmenter = Segmenter::with_options(gpu, model, options)?;

        let bar = if jobs.len() > 1 {
            ProgressBar::new(jobs.len() as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
                .expect("valid template"),
        );
        for job in &jobs {
            bar.set_message(job.path.display().to_string());
            match segment_one(&segmenter, job, probs) {
                Ok(report) => bar.suspend(|| println!("{report}")),
                Err(e) => bar.suspend(|| failures.add(e)),
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    failures.finish(total, empty_directories)
}

/// The failures of a run: each printed as it happens in a batch, and a summary at the end; a single input's one
/// failure is the run's error.
struct Failures {
    batch: bool,
    count: usize,
    last: Option<Error>,
}

impl Failures {
    fn add(&mut self, e: Error) {
        self.count += 1;
        if self.batch {
            eprintln!("atrous: {e}");
        } else {
            self.last = Some(e);
        }
    }

    fn finish(self, images: usize, empty_directories: usize) -> Result<()> {
        if let Some(e) = self.last {
            return Err(e);
        }
        let failed = self.count - empty_directories;
        match (failed, empty_directories) {
            (0, 0) => Ok(()),
            (_, 0) => Err(Error::Model(format!("{failed} of {images} images failed"))),
            (_, n) => Err(Error::Model(format!(
                "{failed} of {images} images failed, and {n} {} held no images",
                if n == 1 { "directory" } else { "directories" }
            ))),
        }
    }
}

fn segment_one(segmenter: &Segmenter, job: &Job, probs: bool) -> Result<String> {
    let path = job.path.as_path();
    let photo = image_io::load_image(path)?;
    let result = segmenter.segment(&photo, probs).map_err(|e| match e {
        Error::TooLarge { .. } => Error::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
        e => e,
    })?;
    if let Some(dir) = job.base.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::File {
            path: dir.to_path_buf(),
            message: format!("cannot create the output directory: {e}"),
        })?;
    }
    let file = |suffix: &str| with_suffix(&job.base, suffix);
    let (w, h) = photo.dimensions();
    let labels = segmenter.labels();
    // Every output is written under a temporary name first; they are renamed into place only once all are complete
    // (a failure removes the temporary files and leaves earlier results as they were).
    let mut staged = vec![
        image_io::stage_png(
            &file(".mask.png"),
            &image_io::mask_image(w, h, &result.classes, labels.len()),
        )?,
        image_io::stage_png(
            &file(".color.png"),
            &image_io::color_image(w, h, &result.classes, segmenter.palette()).into(),
        )?,
        image_io::stage_png(
            &file(".overlay.png"),
            &image_io::overlay_image(&photo, &result.classes, segmenter.palette()).into(),
        )?,
    ];
    if let Some(p) = &result.probabilities {
        let mut t = Weights::new();
        t.insert("probs", p.shape.dims().to_vec(), p.data.clone())?;
        let meta = HashMap::from([("labels".to_string(), labels.join("\n"))]);
        staged.push(StagedFile::write_to_path(&file(PROBS_SUFFIX), |temp| {
            t.save(temp, meta)
        })?);
    }
    image_io::commit_all(staged)?;
    Ok(report(path, &result, labels, &job.base))
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
