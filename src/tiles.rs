//! Tiled (sliding-window) inference over scenes of any size, through the one segmentation flow: each window of
//! the scene is read (boundless: past the edges and at nodata the pixels are invalid and filled with the band's
//! mean, which normalises to 0), run as a [`Frame::Bands`] through a [`Segmenter`] with its class probabilities
//! read back at the window's size, and blended on the host with a smooth window into a rolling band of rows; rows
//! no later window touches are argmaxed and handed to a sink as they are finished. Memory is bounded by the scene
//! width x the window height x the class count, never by the scene.
//!
//! Windows are `tile x tile` (smaller where the scene is), `tile - overlap` apart; the last window of a row or a
//! column is moved back to end at the scene's edge, so that, as in a whole-scene run, the scene's edges are
//! window edges (the network's own padding, not filled pixels, meets them); a scene smaller than a window is read
//! past its edge. Weights are `sin^2(pi (i + 0.5) / tile)` across a window (a Hann window that is never 0), held
//! at 1 over the half of a window that touches a scene edge, since nothing else covers those pixels.
//!
//! Three threads: a reader decodes windows ahead of the GPU, the caller's thread submits `batch` windows in flight
//! (one [`Stream`] each) and blends, and a writer hands finished rows to the sink.

use crate::error::{Error, Result};
use crate::model::InputSize;
use crate::raster::{Raster, Window};
use crate::segment::{Frame, Readback, Request, Resolution, Segmenter, Stream};
use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Where windows come from: a [`Raster`] (a GeoTIFF scene), or anything else that reads boundless windows, such
/// as a [`SyntheticScene`] for benchmarks.
pub trait Scene: Send {
    /// Width and height in pixels.
    fn size(&self) -> (usize, usize);
    /// The number of bands.
    fn bands(&self) -> usize;
    /// The scene's path or name, for messages.
    fn name(&self) -> std::path::PathBuf;
    /// Reads a window of `bands` (0-based) at `(x, y)`, as [`Raster::read_window`] does: past the edges (and at
    /// nodata) pixels are invalid.
    fn read_window(
        &mut self,
        x: i64,
        y: i64,
        width: usize,
        height: usize,
        bands: &[usize],
    ) -> Result<Window>;
}

impl Scene for Raster {
    fn size(&self) -> (usize, usize) {
        (self.width(), self.height())
    }
    fn bands(&self) -> usize {
        Raster::bands(self)
    }
    fn name(&self) -> std::path::PathBuf {
        self.path().to_path_buf()
    }
    fn read_window(
        &mut self,
        x: i64,
        y: i64,
        width: usize,
        height: usize,
        bands: &[usize],
    ) -> Result<Window> {
        Raster::read_window(self, x, y, width, height, bands)
    }
}

/// A scene computed on the fly, of any size and no storage: smooth fields plus noise around `mean` (spread
/// `std`) per band. For benchmarks: the read costs little, so the timing is the GPU's and the blending's.
#[derive(Clone, Debug)]
pub struct SyntheticScene {
    /// Size in pixels.
    pub width: usize,
    pub height: usize,
    /// Per band: the values' centre and spread (so as many bands as values).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Scene for SyntheticScene {
    fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }
    fn bands(&self) -> usize {
        self.mean.len()
    }
    fn name(&self) -> std::path::PathBuf {
        format!("synthetic {}x{} scene", self.width, self.height).into()
    }
    fn read_window(
        &mut self,
        x0: i64,
        y0: i64,
        width: usize,
        height: usize,
        bands: &[usize],
    ) -> Result<Window> {
        let plane = width * height;
        let mut data = vec![0f32; bands.len() * plane];
        let mut valid = vec![false; plane];
        for (k, &b) in bands.iter().enumerate() {
            let (mean, std) = (self.mean[b], self.std[b]);
            for j in 0..height {
                let y = y0 + j as i64;
                for i in 0..width {
                    let x = x0 + i as i64;
                    if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
                        continue;
                    }
                    valid[j * width + i] = true;
                    let (xf, yf, bf) = (x as f32, y as f32, b as f32);
                    let field = (xf / 53.0 + bf).sin() * (yf / 61.0 - bf).cos();
                    let noise = ((x as u64 * 73856093) ^ (y as u64 * 19349663)) % 101;
                    data[k * plane + j * width + i] =
                        mean + std * (field + noise as f32 / 200.0 - 0.25);
                }
            }
        }
        Ok(Window {
            x: x0,
            y: y0,
            width,
            height,
            bands: bands.len(),
            data,
            valid,
        })
    }
}

/// How a scene is cut into windows.
#[derive(Clone, Debug)]
pub struct TileOptions {
    /// Window side, in pixels (rounded down to the model's size multiple).
    pub tile: usize,
    /// Pixels shared by neighbouring windows.
    pub overlap: usize,
    /// Windows in flight on the GPU at once (one stream each).
    pub batch: usize,
    /// Scene bands fed to the model, 0-based, in the model's channel order.
    pub bands: Vec<usize>,
    /// Also hand the blended probabilities of finished rows to the sink.
    pub probabilities: bool,
}

/// The window origins along one axis of `len` pixels: `stride` apart, the last one moved back to end at `len`.
pub fn origins(len: usize, window: usize, stride: usize) -> Vec<usize> {
    if len <= window {
        return vec![0];
    }
    let stride = stride.max(1);
    let mut at: Vec<usize> = (0..)
        .map(|k| k * stride)
        .take_while(|&p| p + window < len)
        .collect();
    at.push(len - window);
    at.dedup();
    at
}

/// The blending weight of each of a window's `len` positions: `sin^2(pi (i + 0.5) / len)`, never 0, held at 1 over
/// the first half where the window starts at the scene's edge (`first`) and over the second where it ends there
/// (`last`).
pub fn weights(len: usize, first: bool, last: bool) -> Vec<f32> {
    (0..len)
        .map(|i| {
            if (first && 2 * i < len) || (last && 2 * i >= len) {
                return 1.0;
            }
            let s = (std::f64::consts::PI * (i as f64 + 0.5) / len as f64).sin();
            (s * s).max(1e-4) as f32
        })
        .collect()
}

/// The window grid over a scene.
#[derive(Clone, Debug)]
pub struct Grid {
    /// The scene's width and height.
    pub width: usize,
    pub height: usize,
    /// Window width and height.
    pub window: (usize, usize),
    /// Left columns of the windows of a row, and top rows of the windows of a column ([`origins`]).
    pub xs: Vec<usize>,
    pub ys: Vec<usize>,
}

impl Grid {
    /// The grid of `tile`-pixel windows overlapping by `overlap` over a `width x height` scene, windows no larger
    /// than the scene rounded up to `multiple`.
    pub fn new(
        width: usize,
        height: usize,
        tile: usize,
        overlap: usize,
        multiple: usize,
    ) -> Result<Grid> {
        if width == 0 || height == 0 {
            return Err(Error::Frame(format!("an empty {width}x{height} scene")));
        }
        if tile <= overlap {
            return Err(Error::Frame(format!(
                "a window of {tile} pixels cannot overlap its neighbours by {overlap}: the tile must be larger than \
                 the overlap"
            )));
        }
        let m = multiple.max(1);
        let side = |len: usize| tile.min(len.next_multiple_of(m));
        let window = (side(width), side(height));
        let stride = tile - overlap;
        Ok(Grid {
            width,
            height,
            window,
            xs: origins(width, window.0, stride),
            ys: origins(height, window.1, stride),
        })
    }

    /// The number of windows.
    pub fn count(&self) -> usize {
        self.xs.len() * self.ys.len()
    }
}

/// Finished rows of a scene, `y0 .. y0 + rows`, full width.
#[derive(Clone, Debug)]
pub struct Rows {
    /// The first row, the number of rows, and the scene's width.
    pub y0: usize,
    pub rows: usize,
    pub width: usize,
    /// Class per pixel, row-major; meaningless where `valid` is false.
    pub classes: Vec<u32>,
    /// Whether the scene holds data at each pixel (not nodata).
    pub valid: Vec<bool>,
    /// With [`TileOptions::probabilities`]: blended probabilities, `classes x rows x width`.
    pub probabilities: Option<Vec<f32>>,
}

/// What a scene's run measured.
#[derive(Clone, Debug)]
pub struct SceneStats {
    /// Windows segmented.
    pub windows: usize,
    /// The window size used, (width, height).
    pub window: (usize, usize),
    /// Wall-clock seconds from the first read to the last row handed to the sink.
    pub seconds: f64,
    /// Host bytes of the blending band (probability sums, weights, validity).
    pub band_bytes: usize,
}

impl SceneStats {
    /// Scene megapixels (of a `width x height` scene) per second.
    pub fn megapixels_per_second(&self, width: usize, height: usize) -> f64 {
        (width * height) as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// The rolling band of rows being blended: probability sums and weight sums for rows `y0 .. y0 + rows`.
struct Blender {
    width: usize,
    height: usize,
    classes: usize,
    y0: usize,
    rows: usize,
    sums: Vec<f32>,
    weight: Vec<f32>,
    valid: Vec<bool>,
    probabilities: bool,
}

impl Blender {
    fn new(width: usize, height: usize, classes: usize, rows: usize, probabilities: bool) -> Self {
        let rows = rows.min(height);
        Blender {
            width,
            height,
            classes,
            y0: 0,
            rows,
            sums: vec![0.0; classes * rows * width],
            weight: vec![0.0; rows * width],
            valid: vec![false; rows * width],
            probabilities,
        }
    }

    fn bytes(&self) -> usize {
        4 * (self.sums.len() + self.weight.len()) + self.valid.len()
    }

    /// Adds a window's probabilities (`classes x h x w` at `(x0, y0)` of the scene) with weights `wx` x `wy`.
    fn add(
        &mut self,
        x0: usize,
        y0: usize,
        window: &Window,
        probs: &[f32],
        wx: &[f32],
        wy: &[f32],
    ) {
        let (w, h) = (window.width, window.height);
        let plane = w * h;
        let band_plane = self.rows * self.width;
        for j in 0..h {
            let y = y0 + j;
            if y >= self.height {
                break;
            }
            debug_assert!(y >= self.y0 && y < self.y0 + self.rows);
            let row = (y - self.y0) * self.width;
            for i in 0..w.min(self.width - x0) {
                let at = row + x0 + i;
                let weight = wy[j] * wx[i];
                self.weight[at] += weight;
                self.valid[at] = window.valid[j * w + i];
                for c in 0..self.classes {
                    self.sums[c * band_plane + at] += weight * probs[c * plane + j * w + i];
                }
            }
        }
    }

    /// Finishes rows `y0 .. until` (argmax of the sums) and moves the band down to start at `until`.
    fn finish(&mut self, until: usize) -> Rows {
        let rows = until.min(self.height) - self.y0;
        let (width, classes) = (self.width, self.classes);
        let band_plane = self.rows * width;
        let n = rows * width;
        let mut out = vec![0u32; n];
        for (at, class) in out.iter_mut().enumerate() {
            let mut best = f32::NEG_INFINITY;
            for c in 0..classes {
                let v = self.sums[c * band_plane + at];
                if v > best {
                    best = v;
                    *class = c as u32;
                }
            }
        }
        let probabilities = self.probabilities.then(|| {
            let mut p = vec![0f32; classes * n];
            for c in 0..classes {
                for at in 0..n {
                    p[c * n + at] =
                        self.sums[c * band_plane + at] / self.weight[at].max(f32::MIN_POSITIVE);
                }
            }
            p
        });
        let valid = self.valid[..n].to_vec();
        // Shift what stays to the band's start and clear the rest.
        let keep = band_plane - n;
        for c in 0..classes {
            let s = &mut self.sums[c * band_plane..(c + 1) * band_plane];
            s.copy_within(n.., 0);
            s[keep..].fill(0.0);
        }
        self.weight.copy_within(n.., 0);
        self.weight[keep..].fill(0.0);
        self.valid.copy_within(n.., 0);
        self.valid[keep..].fill(false);
        let rows_out = Rows {
            y0: self.y0,
            rows,
            width,
            classes: out,
            valid,
            probabilities,
        };
        self.y0 += rows;
        rows_out
    }
}

/// The model's size multiple: windows are cut to a multiple of it so the model sees them unstretched.
pub fn size_multiple(segmenter: &Segmenter) -> usize {
    match segmenter.preprocess_spec().input_size {
        InputSize::Original { multiple_of } => multiple_of.max(1),
        _ => 1,
    }
}

/// The fill value of each model band: its mean, 0 after normalisation.
fn fill_values(segmenter: &Segmenter, bands: usize) -> Vec<f32> {
    segmenter.preprocess_spec().band_normalize(bands).mean
}

/// The largest window side, at most `tile` and a multiple of the model's size multiple, whose plan fits the
/// device: `tile` itself, or a smaller one with a message saying why. Compiles (and keeps) the plan of the
/// window it returns. An error where even a window of twice the overlap does not fit.
pub fn fit_window(
    segmenter: &Segmenter,
    stream: &mut Stream,
    tile: usize,
    overlap: usize,
    channels: usize,
) -> Result<(usize, Option<String>)> {
    let m = size_multiple(segmenter);
    let mut side = (tile / m) * m;
    if side == 0 || side <= overlap {
        return Err(Error::Frame(format!(
            "--tile {tile} with --overlap {overlap}: the window must be larger than the overlap and at least the \
             model's size multiple ({m})"
        )));
    }
    let first = side;
    let mut why = None;
    loop {
        // The band input and the probabilities of a window must fit one buffer each: checked before anything is
        // allocated, so an absurd tile costs nothing.
        let planes = channels.max(segmenter.class_count().max(2)) as u64;
        let bytes = planes * (side as u64) * (side as u64) * 4;
        let attempt = match segmenter
            .engine()
            .gpu()
            .check_storage_size(&format!("a {side}x{side} window of {planes} planes"), bytes)
        {
            Ok(()) => try_window(stream, side, channels),
            Err(e) => Err(e),
        };
        match attempt {
            Ok(()) => break,
            Err(e @ Error::TooLarge { .. }) => {
                why.get_or_insert(e.to_string());
                let next = ((side / 2) / m) * m;
                if next <= overlap || next == 0 {
                    return Err(Error::Frame(format!(
                        "no window of more than {overlap} pixels (the overlap) fits the device: {}",
                        why.unwrap_or_default()
                    )));
                }
                side = next;
            }
            Err(e) => return Err(e),
        }
    }
    let note = (side != first).then(|| {
        format!(
            "a {first}x{first} window does not fit the device ({}); using {side}x{side} windows",
            why.unwrap_or_default()
        )
    });
    Ok((side, note))
}

/// Runs one window of zeros of `side x side`: compiles (and keeps) its plan.
fn try_window(stream: &mut Stream, side: usize, channels: usize) -> Result<()> {
    let data = vec![0f32; channels * side * side];
    let frame = Frame::Bands {
        data: &data,
        channels,
        width: side,
        height: side,
    };
    stream
        .submit(frame, &request())
        .and_then(|s| s.readback.expect("a readback was asked for").wait())
        .map(|_| ())
}

fn request() -> Request<'static> {
    Request {
        resolution: Resolution::Frame,
        readback: Some(Readback::ClassesAndProbabilities),
        ..Default::default()
    }
}

/// A window read by the reader thread.
struct Read {
    x: usize,
    y: usize,
    window: Window,
}

/// Segments the scene `raster` (a [`Raster`] or any [`Scene`]) window by window (see the [module](self)) and hands each run of finished rows
/// to `sink`, in order, on a writer thread; `progress` is called on the caller's thread with the windows done so
/// far and their total. The windows are `options.tile` pixels (see [`fit_window`] to choose one that fits).
pub fn segment_scene(
    segmenter: &Segmenter,
    raster: &mut impl Scene,
    options: &TileOptions,
    sink: impl FnMut(Rows) -> Result<()> + Send,
    mut progress: impl FnMut(usize, usize),
) -> Result<SceneStats> {
    let start = std::time::Instant::now();
    let channels = options.bands.len();
    if channels != segmenter.input_channels() {
        return Err(Error::File {
            path: raster.name(),
            message: format!(
                "{channels} bands selected for a model with {} input channels (choose them with --bands)",
                segmenter.input_channels()
            ),
        });
    }
    let (width, height) = raster.size();
    let grid = Grid::new(
        width,
        height,
        options.tile,
        options.overlap,
        size_multiple(segmenter),
    )?;
    let (ww, wh) = grid.window;
    let fill = fill_values(segmenter, channels);
    let classes = segmenter.class_count().max(2);
    let total = grid.count();
    let mut blender = Blender::new(grid.width, grid.height, classes, wh, options.probabilities);
    let band_bytes = blender.bytes();
    let batch = options.batch.max(1);
    let mut streams: Vec<Stream> = (0..batch).map(|_| segmenter.stream()).collect();
    let wx: Vec<Vec<f32>> = grid
        .xs
        .iter()
        .map(|&x| weights(ww, x == 0, x + ww >= grid.width))
        .collect();
    let wy: Vec<Vec<f32>> = grid
        .ys
        .iter()
        .map(|&y| weights(wh, y == 0, y + wh >= grid.height))
        .collect();

    std::thread::scope(|scope| -> Result<SceneStats> {
        let (read_tx, read_rx) = sync_channel::<Result<Read>>(batch + 1);
        let (rows_tx, rows_rx) = sync_channel::<Rows>(2);
        let grid_r = &grid;
        let bands = &options.bands;
        let fill = &fill;
        let reader = scope.spawn(move || read_windows(raster, grid_r, bands, fill, read_tx));
        let writer = scope.spawn(move || write_rows(rows_rx, sink));
        let blended = run_windows(
            &grid,
            &mut streams,
            read_rx,
            &rows_tx,
            &mut blender,
            (&wx, &wy),
            &mut progress,
        );
        drop(rows_tx);
        let written = writer.join().expect("the writer thread panicked");
        reader.join().expect("the reader thread panicked");
        // A writer failure shows up in the blending loop as a closed channel: the writer's own error comes first.
        written.and(blended)?;
        Ok(SceneStats {
            windows: total,
            window: grid.window,
            seconds: start.elapsed().as_secs_f64(),
            band_bytes,
        })
    })
}

/// The reader thread: every window in grid order, invalid pixels filled, until done or the receiver is gone.
fn read_windows(
    raster: &mut impl Scene,
    grid: &Grid,
    bands: &[usize],
    fill: &[f32],
    tx: SyncSender<Result<Read>>,
) {
    let (ww, wh) = grid.window;
    for &y in &grid.ys {
        for &x in &grid.xs {
            let mut window = match raster.read_window(x as i64, y as i64, ww, wh, bands) {
                Ok(w) => w,
                Err(e) => {
                    // The GPU loop reports it.
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let plane = ww * wh;
            for (b, &f) in fill.iter().enumerate() {
                let data = &mut window.data[b * plane..(b + 1) * plane];
                for (v, &ok) in data.iter_mut().zip(&window.valid) {
                    if !ok {
                        *v = f;
                    }
                }
            }
            if tx.send(Ok(Read { x, y, window })).is_err() {
                return;
            }
        }
    }
}

/// The writer thread: hands each finished run of rows to the sink.
fn write_rows(rx: Receiver<Rows>, mut sink: impl FnMut(Rows) -> Result<()>) -> Result<()> {
    for rows in rx {
        sink(rows)?;
    }
    Ok(())
}

/// The GPU loop: keeps `streams.len()` windows in flight, blends each as it comes back, and sends rows as they
/// are finished.
fn run_windows(
    grid: &Grid,
    streams: &mut [Stream],
    windows: Receiver<Result<Read>>,
    rows: &SyncSender<Rows>,
    blender: &mut Blender,
    (wx, wy): (&[Vec<f32>], &[Vec<f32>]),
    progress: &mut impl FnMut(usize, usize),
) -> Result<()> {
    let total = grid.count();
    let mut in_flight: VecDeque<(Read, crate::segment::FrameReadback)> = VecDeque::new();
    let mut next_stream = 0;
    let mut done = 0;
    let column = |x: usize| grid.xs.iter().position(|&p| p == x).expect("a grid origin");
    let row = |y: usize| grid.ys.iter().position(|&p| p == y).expect("a grid origin");
    let mut blend = |read: Read,
                     readback: crate::segment::FrameReadback,
                     blender: &mut Blender|
     -> Result<()> {
        let result = readback.wait()?;
        let probs = result.probabilities.expect("probabilities were read back");
        // A one-channel model's output is the probability of class 1: blend both classes.
        let probs = match probs.shape.c {
            1 => probs
                .data
                .iter()
                .map(|p| 1.0 - p)
                .chain(probs.data.iter().copied())
                .collect(),
            _ => probs.data,
        };
        // Rows above this window are finished: no later window reaches them.
        if read.y > blender.y0 {
            let finished = blender.finish(read.y);
            rows.send(finished)
                .map_err(|_| Error::Frame("the output writer stopped".into()))?;
        }
        blender.add(
            read.x,
            read.y,
            &read.window,
            &probs,
            &wx[column(read.x)],
            &wy[row(read.y)],
        );
        done += 1;
        progress(done, total);
        Ok(())
    };
    for read in windows {
        let read = read?;
        if in_flight.len() == streams.len() {
            let (r, readback) = in_flight.pop_front().expect("in flight");
            blend(r, readback, blender)?;
        }
        let (ww, wh) = grid.window;
        let frame = Frame::Bands {
            data: &read.window.data,
            channels: read.window.bands,
            width: ww,
            height: wh,
        };
        let submitted = streams[next_stream].submit(frame, &request())?;
        next_stream = (next_stream + 1) % streams.len();
        in_flight.push_back((read, submitted.readback.expect("a readback was asked for")));
    }
    while let Some((r, readback)) = in_flight.pop_front() {
        blend(r, readback, blender)?;
    }
    if done != total {
        return Err(Error::Frame(format!(
            "{done} of {total} windows were segmented: the reader stopped"
        )));
    }
    let finished = blender.finish(grid.height);
    rows.send(finished)
        .map_err(|_| Error::Frame("the output writer stopped".into()))?;
    Ok(())
}
