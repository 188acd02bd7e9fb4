//! Tiled (sliding-window) inference over scenes of any size, through the one segmentation flow: each window of
//! the scene is read (boundless: past the edges and at nodata the pixels are invalid and filled with the band's
//! mean, which normalises to 0), run as a [`Frame::Bands`] through a [`Segmenter`] with its class probabilities
//! read back at the window's size, and blended on the host with a smooth window into a rolling band of rows; rows
//! no later window touches are argmaxed and handed to a sink as they are finished.
//!
//! Memory is bounded by the window, not the scene: a scene wider than a strip ([`TileOptions::strip`], by default
//! [`default_strip`]: [`STRIP_WINDOWS`] windows, a multiple of 256 pixels) is processed in vertical strips, each top
//! to bottom, and the band holds only one strip's columns (strip width plus a window or two x the window height x
//! the class count). A strip runs every window of the scene's one grid that reaches its columns, so the windows
//! straddling a strip boundary run for both strips: each pixel is blended from exactly the windows an unstriped run
//! would use, with the same weights, and the class map is identical. The cost is one column of windows per
//! boundary (with an overlap of at most half a window): 1 / 13 more windows at 12,000 pixels wide with tile 1024
//! and overlap 64.
//!
//! Windows are `tile x tile` (smaller where the scene is), `tile - overlap` apart; the last window of a row or a
//! column is moved back to end at the scene's edge, so that, as in a whole-scene run, the scene's edges are
//! window edges (the network's own padding, not filled pixels, meets them); a scene smaller than a window is read
//! past its edge. Weights are `sin^2(pi (i + 0.5) / tile)` across a window (a Hann window that is never 0), held
//! at 1 over the half of a window that touches a scene edge, since nothing else covers those pixels.
//!
//! Three threads: a reader decodes windows ahead of the GPU, the caller's thread records `batch` windows (one
//! [`Stream`] each) into one command encoder, submits them at once and blends the previous batch while the GPU runs
//! this one, and a writer hands finished rows to the sink.

use crate::error::{Error, Result};
use crate::model::InputSize;
use crate::raster::{Raster, Window};
use crate::segment::{Frame, FrameReadback, Readback, Request, Resolution, Segmenter, Stream};
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
    /// Windows per submission: recorded into one command encoder (one stream each) and submitted together; the
    /// next batch is recorded and submitted before this one is blended, so the GPU always has the next one.
    pub batch: usize,
    /// Scene bands fed to the model, 0-based, in the model's channel order.
    pub bands: Vec<usize>,
    /// Also hand the blended probabilities of finished rows to the sink.
    pub probabilities: bool,
    /// Columns of the scene per vertical strip (see the [module](self)); `None`: [`default_strip`] of the window.
    /// Strips start at multiples of it, so a multiple of a GeoTIFF writer's tile size gives it whole tile columns.
    pub strip: Option<usize>,
}

/// Windows across a default strip: wide enough that the windows run twice at strip boundaries stay few (one
/// column of windows in eight or so), narrow enough that the band is a few hundred MiB at most for 1024-pixel
/// windows of a few classes.
pub const STRIP_WINDOWS: usize = 8;

/// The default strip width for windows `window` pixels wide: [`STRIP_WINDOWS`] windows, rounded up to a multiple of
/// 256 (the GeoTIFF writer's default tile size, so its strips are whole tile columns).
pub fn default_strip(window: usize) -> usize {
    (STRIP_WINDOWS * window.max(1)).next_multiple_of(256)
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

    /// The vertical strips of `strip` columns each (the last one narrower; one strip where the scene is no wider),
    /// with the window columns reaching each.
    pub fn strips(&self, strip: usize) -> Vec<Strip> {
        let strip = strip.max(1);
        let ww = self.window.0;
        (0..self.width)
            .step_by(strip)
            .map(|x0| {
                let x1 = (x0 + strip).min(self.width);
                // Every window that covers a column of x0..x1: those, and only those, blend into its pixels.
                let first = self
                    .xs
                    .iter()
                    .position(|&x| x + ww > x0)
                    .expect("a window reaches the scene's end");
                let end = self
                    .xs
                    .iter()
                    .position(|&x| x >= x1)
                    .unwrap_or(self.xs.len());
                Strip {
                    x0,
                    x1,
                    columns: first..end,
                }
            })
            .collect()
    }
}

/// A vertical strip of a scene: the columns it finishes and the window columns of the [`Grid`] that reach them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strip {
    /// The scene columns `x0 .. x1` it finishes.
    pub x0: usize,
    pub x1: usize,
    /// Indices into [`Grid::xs`] of the windows it runs.
    pub columns: std::ops::Range<usize>,
}

/// Finished rows of a scene, `y0 .. y0 + rows`, of the columns `x0 .. x0 + width` (a strip's, the full width where
/// the scene is one strip). Strips come left to right, each top to bottom.
#[derive(Clone, Debug)]
pub struct Rows {
    /// The first column, the first row, the number of rows, and the number of columns.
    pub x0: usize,
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
    /// Windows segmented, those run for two strips counted twice.
    pub windows: usize,
    /// Windows of the scene's grid (each counted once), and vertical strips.
    pub grid_windows: usize,
    pub strips: usize,
    /// The window size used, (width, height).
    pub window: (usize, usize),
    /// Wall-clock seconds from the first read to the last row handed to the sink.
    pub seconds: f64,
    /// Host bytes of the blending band (probability sums, weights, validity) of the widest strip.
    pub band_bytes: usize,
}

impl SceneStats {
    /// Scene megapixels (of a `width x height` scene) per second.
    pub fn megapixels_per_second(&self, width: usize, height: usize) -> f64 {
        (width * height) as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// The rolling band of rows being blended for one strip: probability sums and weight sums for rows
/// `y0 .. y0 + rows` of the scene columns `x0 .. x0 + width` (every column a window of the strip covers), of which
/// the strip's own columns `own.0 .. own.1` are handed out.
struct Blender {
    x0: usize,
    width: usize,
    own: (usize, usize),
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
    fn new(
        (x0, x1): (usize, usize),
        own: (usize, usize),
        height: usize,
        classes: usize,
        rows: usize,
        probabilities: bool,
    ) -> Self {
        let rows = rows.min(height);
        let width = x1 - x0;
        Blender {
            x0,
            width,
            own,
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

    /// Bytes of the band [`Blender::new`] allocates for columns `x0 .. x1`: f32 sums per class and a weight, and
    /// a validity flag, per cell of `rows` (at most `height`) rows.
    fn band_bytes((x0, x1): (usize, usize), height: usize, classes: usize, rows: usize) -> usize {
        let cells = rows.min(height) * (x1 - x0);
        4 * (classes + 1) * cells + cells
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
        debug_assert!(x0 >= self.x0);
        let left = x0 - self.x0;
        for j in 0..h {
            let y = y0 + j;
            if y >= self.height {
                break;
            }
            debug_assert!(y >= self.y0 && y < self.y0 + self.rows);
            let row = (y - self.y0) * self.width;
            for i in 0..w.min(self.width - left) {
                let at = row + left + i;
                let weight = wy[j] * wx[i];
                self.weight[at] += weight;
                self.valid[at] = window.valid[j * w + i];
                for c in 0..self.classes {
                    self.sums[c * band_plane + at] += weight * probs[c * plane + j * w + i];
                }
            }
        }
    }

    /// Finishes rows `y0 .. until` of the strip's own columns (argmax of the sums) and moves the band down to
    /// start at `until`.
    fn finish(&mut self, until: usize) -> Rows {
        let rows = until.min(self.height) - self.y0;
        let (width, classes) = (self.width, self.classes);
        let (a, b) = (self.own.0 - self.x0, self.own.1 - self.x0);
        let cols = b - a;
        let band_plane = self.rows * width;
        let n = rows * cols;
        // Band index of output pixel `k` (row-major over the own columns).
        let at = |k: usize| (k / cols) * width + a + k % cols;
        let mut out = vec![0u32; n];
        for (k, class) in out.iter_mut().enumerate() {
            let at = at(k);
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
                for k in 0..n {
                    let at = at(k);
                    p[c * n + k] =
                        self.sums[c * band_plane + at] / self.weight[at].max(f32::MIN_POSITIVE);
                }
            }
            p
        });
        let valid = (0..n).map(|k| self.valid[at(k)]).collect();
        // Shift what stays to the band's start and clear the rest.
        let done = rows * width;
        let keep = band_plane - done;
        for c in 0..classes {
            let s = &mut self.sums[c * band_plane..(c + 1) * band_plane];
            s.copy_within(done.., 0);
            s[keep..].fill(0.0);
        }
        self.weight.copy_within(done.., 0);
        self.weight[keep..].fill(0.0);
        self.valid.copy_within(done.., 0);
        self.valid[keep..].fill(false);
        let rows_out = Rows {
            x0: self.own.0,
            y0: self.y0,
            rows,
            width: cols,
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

/// A window of the run, in order: its strip, and its row and column in the grid.
#[derive(Clone, Copy, Debug)]
struct Slot {
    strip: usize,
    row: usize,
    column: usize,
}

/// Every window run, in order: strip by strip, each row by row, left to right within a row.
fn slots(grid: &Grid, strips: &[Strip]) -> Vec<Slot> {
    let mut out = Vec::new();
    for (strip, s) in strips.iter().enumerate() {
        for row in 0..grid.ys.len() {
            for column in s.columns.clone() {
                out.push(Slot { strip, row, column });
            }
        }
    }
    out
}

/// A window read by the reader thread.
struct Read {
    slot: Slot,
    window: Window,
}

/// Segments the scene `raster` (a [`Raster`] or any [`Scene`]) window by window (see the [module](self)) and hands
/// each run of finished rows to `sink`, in order (strip by strip, each top to bottom), on a writer thread;
/// `progress` is called on the caller's thread with the windows done so far and their total. The windows are
/// `options.tile` pixels (see [`fit_window`] to choose one that fits).
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
    let strips = grid.strips(options.strip.unwrap_or_else(|| default_strip(ww)));
    let slots = slots(&grid, &strips);
    // The band of the widest strip: what the blending holds at most.
    let band_bytes = strips
        .iter()
        .map(|s| Blender::band_bytes(strip_span(&grid, s), height, classes, wh))
        .max()
        .unwrap_or(0);
    let batch = options.batch.max(1);
    // Two sets of `batch` streams: one set's batch runs on the GPU while the other's is blended (a stream has one
    // frame in flight).
    let mut streams: [Vec<Stream>; 2] =
        std::array::from_fn(|_| (0..batch).map(|_| segmenter.stream()).collect());
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
        let (read_tx, read_rx) = sync_channel::<Result<Read>>(2 * batch);
        let (rows_tx, rows_rx) = sync_channel::<Rows>(2);
        let grid_r = &grid;
        let slots_r = &slots;
        let bands = &options.bands;
        let fill = &fill;
        let reader =
            scope.spawn(move || read_windows(raster, grid_r, slots_r, bands, fill, read_tx));
        let writer = scope.spawn(move || write_rows(rows_rx, sink));
        let mut blend = Blend {
            grid: &grid,
            strips: &strips,
            rows: &rows_tx,
            blender: None,
            classes,
            probabilities: options.probabilities,
            wx: &wx,
            wy: &wy,
            done: 0,
            total: slots.len(),
        };
        let blended = run_windows(
            segmenter,
            &grid,
            &mut streams,
            read_rx,
            &mut blend,
            &mut progress,
        );
        drop(blend);
        drop(rows_tx);
        let written = writer.join().expect("the writer thread panicked");
        reader.join().expect("the reader thread panicked");
        // A writer failure shows up in the blending loop as a closed channel: the writer's own error comes first.
        written.and(blended)?;
        Ok(SceneStats {
            windows: slots.len(),
            grid_windows: grid.count(),
            strips: strips.len(),
            window: grid.window,
            seconds: start.elapsed().as_secs_f64(),
            band_bytes,
        })
    })
}

/// The scene columns a strip's band covers: from its first window's left edge to its last one's right edge.
fn strip_span(grid: &Grid, strip: &Strip) -> (usize, usize) {
    let x0 = grid.xs[strip.columns.start];
    let x1 = (grid.xs[strip.columns.end - 1] + grid.window.0).min(grid.width);
    (x0, x1)
}

/// The reader thread: every window in run order, invalid pixels filled, until done or the receiver is gone.
fn read_windows(
    raster: &mut impl Scene,
    grid: &Grid,
    slots: &[Slot],
    bands: &[usize],
    fill: &[f32],
    tx: SyncSender<Result<Read>>,
) {
    let (ww, wh) = grid.window;
    for &slot in slots {
        let (x, y) = (grid.xs[slot.column], grid.ys[slot.row]);
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
        if tx.send(Ok(Read { slot, window })).is_err() {
            return;
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

/// The blending side of the GPU loop: the current strip's band, and where finished rows go.
struct Blend<'a> {
    grid: &'a Grid,
    strips: &'a [Strip],
    rows: &'a SyncSender<Rows>,
    /// The current strip and its band.
    blender: Option<(usize, Blender)>,
    classes: usize,
    probabilities: bool,
    wx: &'a [Vec<f32>],
    wy: &'a [Vec<f32>],
    done: usize,
    total: usize,
}

/// Hands finished rows to the writer thread.
fn send(writer: &SyncSender<Rows>, rows: Rows) -> Result<()> {
    writer
        .send(rows)
        .map_err(|_| Error::Frame("the output writer stopped".into()))
}

impl Blend<'_> {
    /// Blends one window's readback, in run order.
    fn add(&mut self, read: Read, mut readback: FrameReadback) -> Result<()> {
        let result = readback.take_finished().unwrap_or_else(|| {
            Err(Error::Device(
                "a window's readback was not complete after its submission finished".into(),
            ))
        })?;
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
        let Slot { strip, row, column } = read.slot;
        if self.blender.as_ref().map(|b| b.0) != Some(strip) {
            // A new strip: the previous one is finished to the bottom.
            self.finish()?;
            let s = &self.strips[strip];
            let span = strip_span(self.grid, s);
            let band = Blender::new(
                span,
                (s.x0, s.x1),
                self.grid.height,
                self.classes,
                self.grid.window.1,
                self.probabilities,
            );
            self.blender = Some((strip, band));
        }
        let (x, y) = (self.grid.xs[column], self.grid.ys[row]);
        let (_, blender) = self.blender.as_mut().expect("a strip's band");
        // Rows above this window are finished: no later window of the strip reaches them.
        if y > blender.y0 {
            send(self.rows, blender.finish(y))?;
        }
        blender.add(x, y, &read.window, &probs, &self.wx[column], &self.wy[row]);
        self.done += 1;
        Ok(())
    }

    /// Finishes the current strip's remaining rows.
    fn finish(&mut self) -> Result<()> {
        if let Some((_, mut blender)) = self.blender.take() {
            send(self.rows, blender.finish(self.grid.height))?;
        }
        Ok(())
    }
}

/// A batch submitted: its windows and their readbacks, and the submission to wait for.
struct Batch {
    windows: Vec<(Read, FrameReadback)>,
    index: wgpu::SubmissionIndex,
}

/// The GPU loop: records up to `batch` windows into one encoder and submits them together; while that batch runs,
/// blends the previous one (waiting for its submission only), and sends rows as they are finished.
fn run_windows(
    segmenter: &Segmenter,
    grid: &Grid,
    streams: &mut [Vec<Stream>; 2],
    windows: Receiver<Result<Read>>,
    blend: &mut Blend<'_>,
    progress: &mut impl FnMut(usize, usize),
) -> Result<()> {
    let gpu = segmenter.engine().gpu().clone();
    let batch = streams[0].len();
    let (ww, wh) = grid.window;
    let mut pending: Option<Batch> = None;
    let mut finish_batch = |b: Batch, blend: &mut Blend<'_>| -> Result<()> {
        gpu.wait_for(b.index)?;
        for (read, readback) in b.windows {
            blend.add(read, readback)?;
            progress(blend.done, blend.total);
        }
        Ok(())
    };
    let mut set = 0;
    let mut windows = windows.into_iter();
    loop {
        // The next batch: up to `batch` windows, as the reader delivers them.
        let mut reads = Vec::with_capacity(batch);
        for read in windows.by_ref() {
            reads.push(read?);
            if reads.len() == batch {
                break;
            }
        }
        if reads.is_empty() {
            break;
        }
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let mut recorded = Vec::with_capacity(reads.len());
        for (read, stream) in reads.iter().zip(streams[set].iter_mut()) {
            let frame = Frame::Bands {
                data: &read.window.data,
                channels: read.window.bands,
                width: ww,
                height: wh,
            };
            recorded.push(stream.record(&mut encoder, frame, &request())?);
        }
        let index = gpu.queue.submit([encoder.finish()]);
        let windows = reads
            .into_iter()
            .zip(recorded)
            .map(|(read, r)| match r.submitted() {
                Some(readback) => Ok((read, readback)),
                None => Err(Error::Frame(
                    "a window was recorded without its readback".into(),
                )),
            })
            .collect::<Result<Vec<(Read, FrameReadback)>>>()?;
        set = 1 - set;
        if let Some(previous) = pending.replace(Batch { windows, index }) {
            finish_batch(previous, blend)?;
        }
    }
    if let Some(last) = pending.take() {
        finish_batch(last, blend)?;
    }
    if blend.done != blend.total {
        return Err(Error::Frame(format!(
            "{} of {} windows were segmented: the reader stopped",
            blend.done, blend.total
        )));
    }
    blend.finish()
}
