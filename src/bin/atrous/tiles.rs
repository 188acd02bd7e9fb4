//! `atrous segment --tile N`: georeferenced scenes of any size, segmented window by window ([`atrous::tiles`]),
//! written as tiled deflate GeoTIFFs with the scene's georeferencing; many scenes, shards of an archive, and
//! outputs already there skipped.

use super::{load_model, resolve_path};
use crate::Numerics;
use atrous::image_io::{self, StagedFile};
use atrous::raster::{Raster, RasterWriter, SampleType, WriterSpec};
use atrous::tiles::{fit_window, segment_scene, Rows, TileOptions};
use atrous::{Error, Gpu, Result, Segmenter};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Scenes larger than this many pixels get no colour preview PNG (it would be held in memory whole).
pub const COLOUR_PREVIEW_PIXELS: usize = 4096 * 4096;

/// The nodata value written into probability GeoTIFFs where the scene has none.
pub const PROBS_NODATA: f64 = -1.0;

/// Tiled inference over georeferenced scenes (GeoTIFF). With `--tile`, inputs are scenes (.tif, .tiff) or
/// directories of them.
#[derive(clap::Args, Debug, Default)]
pub struct TileArgs {
    /// Segment each scene in windows of N x N pixels (rounded down to the model's size multiple; shrunk with a
    /// message where the device cannot hold them), writing <stem>.mask.tif and, with --probs, <stem>.probs.tif.
    /// TIFF files given alone are scenes without it too, in windows of 1024 (one window for a smaller scene).
    #[arg(long, value_name = "N")]
    pub tile: Option<usize>,
    /// Pixels shared by neighbouring windows, blended with a Hann window.
    #[arg(long, default_value_t = 64, value_name = "M")]
    pub overlap: usize,
    /// Windows per GPU submission (recorded into one command encoder, one stream each); the next batch is
    /// submitted before the previous one is blended.
    #[arg(long, default_value_t = 2, value_name = "B")]
    pub batch: usize,
    /// Columns per vertical strip of a wide scene, a multiple of 256 (the output GeoTIFFs' tile size): the blending
    /// holds one strip's columns, so memory grows with it and not with the scene; the windows straddling a strip
    /// boundary run for both strips. Default: 8 windows, rounded up to a multiple of 256.
    #[arg(long, value_name = "COLUMNS")]
    pub strip: Option<usize>,
    /// Scene bands fed to the model, counted from 1 as GDAL does, in the model's channel order (e.g. 4,3,2,8);
    /// default: the first bands, as many as the model takes.
    #[arg(long, value_delimiter = ',')]
    pub bands: Option<Vec<usize>>,
    /// The scenes' nodata value, overriding (or supplying) the files' own.
    #[arg(long)]
    pub nodata: Option<f64>,
    /// Skip scenes whose outputs exist already.
    #[arg(long)]
    pub skip_existing: bool,
    /// Process shard I of N (0 <= I < N): the scenes at positions I, I + N, I + 2N, ... of the sorted list.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// A text file listing scenes, one path per line (besides those on the command line).
    #[arg(long, value_name = "FILE")]
    pub scenes_from: Option<PathBuf>,
}

/// The window side of scenes segmented without `--tile`: what the measurements in BENCHMARKS.md used; a scene no
/// larger runs as one window, a device that cannot hold it gets the largest window it can (with a message).
pub const DEFAULT_TILE: usize = 1024;

/// Whether `atrous segment` runs tiled inference over scenes: with `--tile` or `--scenes-from`, or when every input
/// is a TIFF file (a scene, whatever its size: too large for the device or not, it is segmented in windows).
pub fn wanted(args: &TileArgs, inputs: &[PathBuf]) -> bool {
    args.tile.is_some()
        || args.scenes_from.is_some()
        || (!inputs.is_empty() && inputs.iter().all(|p| is_scene(p) && !p.is_dir()))
}

fn is_scene(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    (name.ends_with(".tif") || name.ends_with(".tiff"))
        && !name.ends_with(".mask.tif")
        && !name.ends_with(".probs.tif")
}

/// "I/N" as (I, N).
pub fn parse_shard(text: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::Model(format!(
            "--shard {text:?}: I/N expected, with 0 <= I < N (e.g. 3/8)"
        ))
    };
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// A scene and the path its outputs start with (`<out>/<relative directory>/<stem>`).
struct Scene {
    path: PathBuf,
    base: PathBuf,
}

/// Every scene named: files as they are, directories walked, list files read; sorted by output path and
/// deduplicated, so that every shard sees the same list.
fn collect(inputs: &[PathBuf], list: Option<&Path>, out: &Path) -> Result<Vec<Scene>> {
    let mut named: Vec<PathBuf> = inputs.to_vec();
    if let Some(list) = list {
        let text = std::fs::read_to_string(list).map_err(|e| Error::File {
            path: list.to_path_buf(),
            message: e.to_string(),
        })?;
        named.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(PathBuf::from),
        );
    }
    let mut scenes = Vec::new();
    for input in named {
        if input.is_dir() {
            let before = scenes.len();
            for entry in walkdir::WalkDir::new(&input)
                .sort_by_file_name()
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file() && is_scene(e.path()))
            {
                let relative = entry.path().strip_prefix(&input).unwrap_or(entry.path());
                let base = out.join(relative.with_extension(""));
                scenes.push(Scene {
                    path: entry.into_path(),
                    base,
                });
            }
            if scenes.len() == before {
                return Err(Error::File {
                    path: input,
                    message: "directory holds no scenes (.tif, .tiff)".into(),
                });
            }
        } else {
            let stem = input.file_stem().unwrap_or(input.as_os_str()).to_owned();
            scenes.push(Scene {
                base: out.join(stem),
                path: input,
            });
        }
    }
    scenes.sort_by(|a, b| a.base.cmp(&b.base).then(a.path.cmp(&b.path)));
    scenes.dedup_by(|a, b| resolve_path(&a.path) == resolve_path(&b.path));
    if let Some(pair) = scenes.windows(2).find(|p| p[0].base == p[1].base) {
        return Err(Error::File {
            path: pair[1].path.clone(),
            message: format!(
                "its outputs would have the same names as those of {}",
                pair[0].path.display()
            ),
        });
    }
    Ok(scenes)
}

/// `base` with `suffix` appended to its file name.
fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    model: Option<&Path>,
    arch: Option<&str>,
    out: &Path,
    probs: bool,
    numerics: Numerics,
    preprocessing: &super::segment::Preprocessing,
    args: &TileArgs,
    inputs: &[PathBuf],
) -> Result<()> {
    let tile = args.tile.unwrap_or(DEFAULT_TILE);
    if let Some(strip) = args.strip.filter(|&n| n == 0 || n % 256 != 0) {
        return Err(Error::Model(format!(
            "--strip {strip}: a positive multiple of 256 expected (strips are whole tiles of the output GeoTIFFs)"
        )));
    }
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let mut scenes = collect(inputs, args.scenes_from.as_deref(), out)?;
    let listed = scenes.len();
    if let Some((i, n)) = shard {
        scenes = scenes
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, s)| s)
            .collect();
        eprintln!("shard {i}/{n}: {} of {listed} scenes", scenes.len());
    }
    let outputs = |s: &Scene| -> Vec<PathBuf> {
        let mut o = vec![with_suffix(&s.base, ".mask.tif")];
        if probs {
            o.push(with_suffix(&s.base, ".probs.tif"));
        }
        o
    };
    if args.skip_existing {
        let before = scenes.len();
        scenes.retain(|s| !outputs(s).iter().all(|p| p.exists()));
        if before > scenes.len() {
            eprintln!(
                "skipping {} scenes whose outputs exist",
                before - scenes.len()
            );
        }
    }
    if scenes.is_empty() {
        return Ok(());
    }
    for s in &scenes {
        if outputs(s)
            .iter()
            .any(|o| resolve_path(o) == resolve_path(&s.path))
        {
            return Err(Error::File {
                path: s.path.clone(),
                message: "its output would overwrite it".into(),
            });
        }
    }

    let model_path = model.map_or_else(super::segment::default_model, Path::to_path_buf);
    let mut model = load_model(&model_path, arch)?;
    let channels = model.graph.inputs.first().map_or(0, |i| i.channels);
    preprocessing
        .apply_bands(&mut model, channels)
        .map_err(|e| Error::File {
            path: model_path.clone(),
            message: e.to_string(),
        })?;
    let gpu = Arc::new(Gpu::new()?);
    let segmenter = Segmenter::with_options(gpu, model, numerics.options())?;

    let mut window = std::collections::HashMap::new();
    let mut failed = 0;
    let total = scenes.len();
    for scene in &scenes {
        let result = segment_one(&segmenter, scene, probs, args, tile, &mut window);
        match result {
            Ok(report) => println!("{report}"),
            Err(e) => {
                failed += 1;
                if total > 1 {
                    eprintln!("atrous: {e}");
                } else {
                    return Err(e);
                }
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(Error::Model(format!("{n} of {total} scenes failed"))),
    }
}

/// Attaches the scene's path to errors that do not name a file.
fn naming(path: &Path) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        e @ Error::File { .. } => e,
        e => Error::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    }
}

/// The output writers of one scene, fed rows by the writer thread.
struct Outputs {
    mask: RasterWriter,
    mask_nodata: Option<f64>,
    u16_classes: bool,
    probs: Option<RasterWriter>,
    /// The colour preview (RGB, the whole scene: small scenes only), filled strip by strip.
    colour: Option<Vec<u8>>,
    width: usize,
    palette: Vec<[u8; 3]>,
    counts: Vec<u64>,
}

impl Outputs {
    fn write(&mut self, rows: Rows) -> Result<()> {
        let nodata = self.mask_nodata.unwrap_or(0.0);
        let class = |i: usize| -> f64 {
            match rows.valid[i] || self.mask_nodata.is_none() {
                true => rows.classes[i] as f64,
                false => nodata,
            }
        };
        for (i, &c) in rows.classes.iter().enumerate() {
            if rows.valid[i] {
                if let Some(n) = self.counts.get_mut(c as usize) {
                    *n += 1;
                }
            }
        }
        let n = rows.classes.len();
        let (x0, y0, cols) = (rows.x0, rows.y0, rows.width);
        if self.u16_classes {
            let data: Vec<u16> = (0..n).map(|i| class(i) as u16).collect();
            self.mask.write_block(x0, y0, cols, rows.rows, &data)?;
        } else {
            let data: Vec<u8> = (0..n).map(|i| class(i) as u8).collect();
            self.mask.write_block(x0, y0, cols, rows.rows, &data)?;
        }
        if let (Some(writer), Some(p)) = (&mut self.probs, &rows.probabilities) {
            let mut p = p.clone();
            let plane = n;
            for (k, v) in p.iter_mut().enumerate() {
                if !rows.valid[k % plane] {
                    *v = PROBS_NODATA as f32;
                }
            }
            writer.write_block(x0, y0, cols, rows.rows, &p)?;
        }
        if let Some(colour) = &mut self.colour {
            for (i, &c) in rows.classes.iter().enumerate() {
                let rgb = match rows.valid[i] {
                    true => self.palette.get(c as usize).copied().unwrap_or([0; 3]),
                    false => [0; 3],
                };
                let at = 3 * ((y0 + i / cols) * self.width + x0 + i % cols);
                colour[at..at + 3].copy_from_slice(&rgb);
            }
        }
        Ok(())
    }
}

fn segment_one(
    segmenter: &Segmenter,
    scene: &Scene,
    probs: bool,
    args: &TileArgs,
    tile: usize,
    window: &mut std::collections::HashMap<usize, usize>,
) -> Result<String> {
    let path = scene.path.as_path();
    let mut raster = Raster::open(path)?;
    if args.nodata.is_some() {
        raster.set_nodata(args.nodata);
    }
    let channels = segmenter.input_channels();
    let bands: Vec<usize> = match &args.bands {
        Some(b) => b.clone(),
        None => (1..=channels).collect(),
    };
    if let Some(&b) = bands.iter().find(|&&b| b == 0 || b > raster.bands()) {
        return Err(Error::File {
            path: path.to_path_buf(),
            message: format!(
                "band {b} does not exist: the scene has bands 1 to {}",
                raster.bands()
            ),
        });
    }
    if bands.len() != channels {
        return Err(Error::File {
            path: path.to_path_buf(),
            message: format!(
                "{} bands selected ({}) for a model that takes {channels}{}",
                bands.len(),
                join(&bands),
                match &args.bands {
                    Some(_) => String::new(),
                    None => format!(
                        " (the scene has {}; choose them with --bands)",
                        raster.bands()
                    ),
                }
            ),
        });
    }
    // The window: the largest that fits the device (no larger than the scene needs), found once per size.
    let m = atrous::tiles::size_multiple(segmenter);
    let needed = tile.min(
        raster
            .width()
            .max(raster.height())
            .next_multiple_of(m)
            .max(m),
    );
    // A scene smaller than the tile takes one window: the overlap then only has to be smaller than it.
    let overlap = match needed < tile {
        true => args.overlap.min(needed / 2),
        false => args.overlap,
    };
    let side = match window.get(&needed) {
        Some(&side) => side,
        None => {
            let mut stream = segmenter.stream();
            let (side, note) = fit_window(segmenter, &mut stream, needed, overlap, channels)
                .map_err(naming(path))?;
            if let Some(note) = note {
                eprintln!("atrous: {note}");
            }
            window.insert(needed, side);
            side
        }
    };
    let (width, height) = (raster.width(), raster.height());
    let classes = segmenter.class_count().max(2);
    let u16_classes = classes > 255;
    // Nodata in the outputs wherever the scene can have invalid pixels: a nodata value, or NaN in float samples.
    let may_be_invalid = raster.nodata().is_some()
        || matches!(raster.sample_type(), SampleType::F32 | SampleType::F64);
    let mask_nodata = may_be_invalid.then_some(if u16_classes { 65535.0 } else { 255.0 });
    if let Some(dir) = scene.base.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::File {
            path: dir.to_path_buf(),
            message: format!("cannot create the output directory: {e}"),
        })?;
    }
    let mask_path = with_suffix(&scene.base, ".mask.tif");
    let spec = WriterSpec::new(
        width,
        height,
        1,
        if u16_classes {
            SampleType::U16
        } else {
            SampleType::U8
        },
    )
    .geo(raster.geo().clone())
    .nodata(mask_nodata);
    let probs_path = with_suffix(&scene.base, ".probs.tif");
    let mut outputs = Outputs {
        mask: RasterWriter::create(&mask_path, &spec)?,
        mask_nodata,
        u16_classes,
        probs: match probs {
            true => {
                let spec = WriterSpec::new(width, height, classes, SampleType::F32)
                    .geo(raster.geo().clone())
                    .nodata(may_be_invalid.then_some(PROBS_NODATA));
                Some(RasterWriter::create(&probs_path, &spec)?)
            }
            false => None,
        },
        colour: (width * height <= COLOUR_PREVIEW_PIXELS).then(|| vec![0; 3 * width * height]),
        width,
        palette: segmenter.palette().to_vec(),
        counts: vec![0; classes],
    };
    let strip = args
        .strip
        .unwrap_or_else(|| atrous::tiles::default_strip(side));
    let options = TileOptions {
        tile: side,
        overlap,
        batch: args.batch,
        bands: bands.iter().map(|b| b - 1).collect(),
        probabilities: probs,
        // Strips of whole output tiles (the writers' default 256; default_strip is a multiple of it).
        strip: Some(strip),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} windows {wide_msg}")
            .expect("valid template"),
    );
    bar.set_message(path.display().to_string());
    let stats = segment_scene(
        segmenter,
        &mut raster,
        &options,
        |rows| outputs.write(rows),
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .map_err(naming(path));
    bar.finish_and_clear();
    let stats = stats?;
    let Outputs {
        mask,
        probs: probs_writer,
        colour,
        palette: _,
        counts,
        ..
    } = outputs;
    let mut staged: Vec<StagedFile> = vec![mask.finish_staged()?];
    if let Some(w) = probs_writer {
        staged.push(w.finish_staged()?);
    }
    let colour_path = with_suffix(&scene.base, ".color.png");
    let colour_note = match colour {
        Some(rgb) => {
            let image = image::RgbImage::from_raw(width as u32, height as u32, rgb)
                .ok_or_else(|| Error::Model("colour preview of the wrong size".into()))?;
            staged.push(image_io::stage_png(&colour_path, &image.into())?);
            format!("{}", colour_path.display())
        }
        None => format!(
            "no colour preview: the scene is larger than {} pixels",
            COLOUR_PREVIEW_PIXELS
        ),
    };
    image_io::commit_all(staged)?;
    let valid: u64 = counts.iter().sum();
    let mut text = format!(
        "{} ({width}x{height}, {} of {}x{}{}) -> {}{}; {colour_note}\n  {:.2} megapixels/s ({:.1} s)",
        path.display(),
        match stats.windows {
            1 => "1 window".to_string(),
            n => format!("{n} windows"),
        },
        stats.window.0,
        stats.window.1,
        match stats.strips {
            1 => String::new(),
            n => format!(
                " in {n} strips: {} windows of the grid, those at strip boundaries run twice",
                stats.grid_windows
            ),
        },
        mask_path.display(),
        match probs {
            true => format!(", {}", probs_path.display()),
            false => String::new(),
        },
        stats.megapixels_per_second(width, height),
        stats.seconds
    );
    let labels = segmenter.labels();
    for (label, &n) in labels.iter().zip(&counts) {
        if n > 0 {
            text.push_str(&format!(
                "\n  {label:<12}  {:>6.2}%",
                100.0 * n as f64 / valid.max(1) as f64
            ));
        }
    }
    Ok(text)
}

fn join(values: &[usize]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
