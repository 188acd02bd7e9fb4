//! Windowed reading of (Geo)TIFF scenes: only the strips or tiles overlapping a window are decoded, through a
//! small cache bounded in bytes, and a strip or tile too large for the cache is streamed row by row, so memory
//! depends on the window and the cache, never on the scene.

use super::codec::{decompressor, Compression, RowFormat};
use super::geo::{tags, GeoTags};
use super::{
    file_error, SampleType, DEFAULT_CACHE_BYTES, MAX_ROW_BYTES, MAX_SCENE_BYTES, MAX_WINDOW_SAMPLES,
};
use crate::error::Result;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tiff::decoder::Decoder;
use tiff::tags::Tag;

/// A window of a raster: `bands` planes of `height x width` f32 values, band-major
/// (`data[(band * height + row) * width + col]`), and one validity flag per pixel (`valid[row * width + col]`).
///
/// A pixel is invalid where it lies outside the scene, or where any of the window's bands holds the nodata value
/// or NaN. Invalid pixels hold the nodata value (0 where there is none) outside the scene, and their stored values
/// inside it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// Column of the window's left edge in the scene (may be negative or past the right edge).
    pub x: i64,
    /// Row of the window's top edge in the scene (may be negative or past the bottom edge).
    pub y: i64,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bands (planes), in the order they were asked for.
    pub bands: usize,
    /// The values, band-major: `bands x height x width`.
    pub data: Vec<f32>,
    /// Whether each pixel (`height x width`, row-major) holds data.
    pub valid: Vec<bool>,
}

impl Window {
    /// The plane of band `i` (the `i`-th band asked for), `height x width` row-major.
    pub fn band(&self, i: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.data[i * n..(i + 1) * n]
    }

    /// The plane of band `i`, mutable.
    pub fn band_mut(&mut self, i: usize) -> &mut [f32] {
        let n = self.width * self.height;
        &mut self.data[i * n..(i + 1) * n]
    }

    /// Whether the pixel at (`row`, `col`) of the window holds data.
    pub fn is_valid(&self, row: usize, col: usize) -> bool {
        self.valid[row * self.width + col]
    }

    /// How many pixels hold data.
    pub fn valid_count(&self) -> usize {
        self.valid.iter().filter(|&&v| v).count()
    }
}

/// An open (Geo)TIFF scene, read window by window. See the [module](super) for what is supported.
///
/// Memory: the strip or tile offset tables (16 bytes per strip or tile), a cache of decoded strips or tiles
/// bounded by [`Raster::set_cache_capacity`] (64 MiB by default), one row of a strip or tile, and the window.
#[derive(Debug)]
pub struct Raster {
    path: PathBuf,
    width: usize,
    height: usize,
    bands: usize,
    sample_type: SampleType,
    chunks: Chunks,
    file_nodata: Option<f64>,
    nodata: Option<f64>,
    geo: GeoTags,
    cache: ChunkCache,
    row: Vec<u8>,
    predictor_scratch: Vec<u8>,
}

/// How a scene is cut into strips or tiles.
#[derive(Clone, Copy, Debug)]
struct ChunkLayout {
    tiled: bool,
    /// Width of a chunk in pixels: the tile width, or the scene's width for strips.
    width: usize,
    /// Height of a chunk: the tile height, or the rows per strip (at most the scene's height).
    height: usize,
    across: usize,
    down: usize,
    /// 1 for pixel-interleaved files, the band count for planar ones (one chunk per band).
    planes: usize,
    /// Samples per pixel within a chunk.
    samples: usize,
    /// Bytes of one decoded row of a chunk.
    row_bytes: usize,
}

impl ChunkLayout {
    fn index(&self, plane: usize, cy: usize, cx: usize) -> usize {
        (plane * self.down + cy) * self.across + cx
    }

    /// Rows of chunk row `cy` that lie inside a scene `height` rows high.
    fn rows_in(&self, cy: usize, height: usize) -> usize {
        self.height.min(height - cy * self.height)
    }

    fn kind(&self) -> &'static str {
        if self.tiled {
            "tile"
        } else {
            "strip"
        }
    }
}

impl Raster {
    /// Opens a TIFF or GeoTIFF and reads its first image's header: size, bands, sample type, layout, nodata and
    /// georeferencing. Unsupported or malformed files (truncated, 1-bit, complex, JPEG-compressed, sizes past the
    /// limits, a GDAL_NODATA tag that is not a number) are an error naming the file and the problem. Palette
    /// files read as their indices, as GDAL reads them.
    pub fn open(path: impl AsRef<Path>) -> Result<Raster> {
        let path = path.as_ref();
        let fail = |message: String| file_error(path, message);
        let file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        let file_len = file
            .metadata()
            .map_err(|e| fail(format!("cannot open: {e}")))?
            .len();
        let big_endian = check_first_directory(&file, file_len)
            .map_err(|m| fail(format!("not a readable TIFF: {m}")))?;
        let header = {
            (&file)
                .seek(SeekFrom::Start(0))
                .map_err(|e| fail(format!("cannot read: {e}")))?;
            let mut decoder = Decoder::new(BufReader::new(&file))
                .map_err(|e| fail(format!("not a readable TIFF: {e}")))?;
            read_header(&mut decoder).map_err(|e| fail(format!("not a readable TIFF: {e}")))?
        };
        let Header {
            width,
            height,
            bands,
            bits,
            sample_formats,
            compression,
            photometric,
            predictor,
            planar,
            tile,
            rows_per_strip,
            offsets,
            byte_counts,
            nodata_text,
            geo,
        } = header;

        if bits.iter().any(|&b| b != bits[0]) {
            return Err(fail(format!(
                "bands of different bit depths ({bits:?}) are not supported"
            )));
        }
        if sample_formats.iter().any(|&f| f != sample_formats[0]) {
            return Err(fail(format!(
                "bands of different sample formats ({sample_formats:?}) are not supported"
            )));
        }
        let sample_type = SampleType::from_tiff(sample_formats[0], bits[0]).ok_or_else(|| {
            let what = match sample_formats[0] {
                5 | 6 => "complex".to_string(),
                4 => "void (untyped)".to_string(),
                1 => format!("{}-bit unsigned integer", bits[0]),
                2 => format!("{}-bit signed integer", bits[0]),
                3 => format!("{}-bit float", bits[0]),
                f => format!("sample format {f}"),
            };
            fail(format!(
                "{what} samples are not supported (only u8, i8, u16, i16, u32, i32, f32 and f64)"
            ))
        })?;
        match photometric {
            // Grey (either polarity: values are returned as stored, as GDAL does), RGB, palette (the indices),
            // separated (CMYK): each band's values as stored.
            0..=3 | 5 => {}
            6 => {
                return Err(fail(
                    "YCbCr photometric interpretation (usually JPEG-compressed imagery) is not supported; convert \
                     it, e.g. gdal_translate -co COMPRESS=DEFLATE -co PHOTOMETRIC=RGB"
                        .to_string(),
                ))
            }
            p => {
                return Err(fail(format!(
                    "photometric interpretation {p} is not supported (only grey, RGB, palette and CMYK)"
                )))
            }
        }
        let compression = Compression::from_tiff(compression).map_err(fail)?;
        match (predictor, sample_type) {
            (1 | 2, _) => {}
            (3, SampleType::F32 | SampleType::F64) => {}
            (p, t) => {
                return Err(fail(format!(
                    "predictor {p} is not supported for {t} samples"
                )))
            }
        }
        let planes = if planar && bands > 1 { bands } else { 1 };
        let samples = bands / planes;

        // Sizes: every product checked before anything depends on it.
        let sample_bytes = sample_type.bytes() as u64;
        let scene_bytes = (width as u64)
            .checked_mul(height as u64)
            .and_then(|n| n.checked_mul(bands as u64))
            .and_then(|n| n.checked_mul(sample_bytes))
            .filter(|&n| n <= MAX_SCENE_BYTES)
            .ok_or_else(|| {
                fail(format!(
                    "a scene of {width} x {height} pixels x {bands} bands of {sample_type} is over the limit of \
                     {MAX_SCENE_BYTES} bytes"
                ))
            })?;
        let _ = scene_bytes;
        let (chunk_width, chunk_height) = match tile {
            Some((w, h)) => (w as usize, h as usize),
            None => (width, (rows_per_strip as usize).min(height)),
        };
        if chunk_width == 0 || chunk_height == 0 {
            return Err(fail("a strip or tile of zero size".to_string()));
        }
        let row_bytes = (chunk_width as u64)
            .checked_mul(samples as u64)
            .and_then(|n| n.checked_mul(sample_bytes))
            .filter(|&n| n <= MAX_ROW_BYTES)
            .ok_or_else(|| {
                fail(format!(
                    "a row of a strip or tile ({chunk_width} pixels x {samples} samples of {sample_type}) is over \
                     the limit of {MAX_ROW_BYTES} bytes"
                ))
            })? as usize;
        let layout = ChunkLayout {
            tiled: tile.is_some(),
            width: chunk_width,
            height: chunk_height,
            across: width.div_ceil(chunk_width),
            down: height.div_ceil(chunk_height),
            planes,
            samples,
            row_bytes,
        };
        let chunks = layout
            .across
            .checked_mul(layout.down)
            .and_then(|n| n.checked_mul(planes));
        if chunks != Some(offsets.len()) || offsets.len() != byte_counts.len() {
            return Err(fail(format!(
                "{} {}s expected, but the file lists {} offsets and {} byte counts",
                chunks.map_or("too many".to_string(), |n| n.to_string()),
                layout.kind(),
                offsets.len(),
                byte_counts.len()
            )));
        }
        for (i, (&offset, &count)) in offsets.iter().zip(&byte_counts).enumerate() {
            if count == 0 {
                continue; // A sparse chunk (GDAL's SPARSE_OK): reads as nodata, or 0.
            }
            let end = offset.checked_add(count);
            if end.is_none_or(|end| end > file_len) {
                return Err(fail(format!(
                    "truncated: {} {i} lies at bytes {offset}..{} but the file has {file_len} bytes",
                    layout.kind(),
                    offset as u128 + count as u128
                )));
            }
            if compression == Compression::None {
                let cy = (i / layout.across) % layout.down;
                let needed = layout.rows_in(cy, height) as u64 * row_bytes as u64;
                if count < needed {
                    return Err(fail(format!(
                        "truncated: uncompressed {} {i} holds {count} bytes, fewer than the {needed} its pixels \
                         need",
                        layout.kind()
                    )));
                }
            }
        }

        let file_nodata = match nodata_text {
            None => None,
            Some(text) => {
                let t = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
                match t.parse::<f64>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        return Err(fail(format!(
                            "the GDAL_NODATA tag (42113) holds {t:?}, which is not a number"
                        )))
                    }
                }
            }
        };

        Ok(Raster {
            path: path.to_path_buf(),
            width,
            height,
            bands,
            sample_type,
            chunks: Chunks {
                file,
                layout,
                compression,
                format: RowFormat {
                    sample_bytes: sample_type.bytes(),
                    samples_per_pixel: samples,
                    predictor,
                    big_endian,
                },
                offsets,
                byte_counts,
            },
            file_nodata,
            nodata: file_nodata,
            geo,
            cache: ChunkCache::new(DEFAULT_CACHE_BYTES),
            row: Vec::new(),
            predictor_scratch: Vec::new(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Bands (samples per pixel).
    pub fn bands(&self) -> usize {
        self.bands
    }

    /// The type the samples are stored as (windows come back as f32 whatever it is).
    pub fn sample_type(&self) -> SampleType {
        self.sample_type
    }

    /// The nodata value in use: the caller's ([`Raster::set_nodata`]) or else the file's GDAL_NODATA tag.
    pub fn nodata(&self) -> Option<f64> {
        self.nodata
    }

    /// The nodata value the file itself states (GDAL_NODATA, tag 42113), whatever the caller set.
    pub fn file_nodata(&self) -> Option<f64> {
        self.file_nodata
    }

    /// Replaces the nodata value (`None`: no value is nodata; NaN is always invalid).
    pub fn set_nodata(&mut self, nodata: Option<f64>) {
        self.nodata = nodata;
    }

    /// The georeferencing tags, as stored (empty for a plain TIFF).
    pub fn geo(&self) -> &GeoTags {
        &self.geo
    }

    /// Whether the file is tiled (else stripped).
    pub fn is_tiled(&self) -> bool {
        self.chunks.layout.tiled
    }

    /// The size of a tile, or of a strip (the scene's width x the rows per strip), as (width, height).
    pub fn block_size(&self) -> (usize, usize) {
        (self.chunks.layout.width, self.chunks.layout.height)
    }

    /// Sets the most bytes the cache of decoded strips and tiles may hold (emptying it). Strips or tiles larger
    /// than half of it are never cached but streamed row by row for each window: correct, with memory bounded,
    /// but slower when many windows need them.
    pub fn set_cache_capacity(&mut self, bytes: usize) {
        self.cache = ChunkCache::new(bytes);
    }

    /// Bytes the cache of decoded strips and tiles holds now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.used
    }

    /// Reads a window of `bands` (0-based indices, in any order, repeats allowed) whose top left pixel is at
    /// column `x`, row `y` of the scene; it may reach past any edge (those pixels are invalid). See [`Window`].
    ///
    /// A band index past the last band is an error naming the file and the band counted from 1, as GDAL and the
    /// command line count; so is a window of more than [`MAX_WINDOW_SAMPLES`](super::MAX_WINDOW_SAMPLES) samples
    /// or a strip or tile that does not decode.
    pub fn read_window(
        &mut self,
        x: i64,
        y: i64,
        width: usize,
        height: usize,
        bands: &[usize],
    ) -> Result<Window> {
        let mut window = Window::default();
        self.read_window_into(x, y, width, height, bands, &mut window)?;
        Ok(window)
    }

    /// [`Raster::read_window`] into an existing window, reusing its buffers.
    pub fn read_window_into(
        &mut self,
        x: i64,
        y: i64,
        width: usize,
        height: usize,
        bands: &[usize],
        out: &mut Window,
    ) -> Result<()> {
        if bands.is_empty() {
            return Err(file_error(&self.path, "no bands asked for"));
        }
        if let Some(&b) = bands.iter().find(|&&b| b >= self.bands) {
            return Err(file_error(
                &self.path,
                format!(
                    "band {} is out of range: the raster has {} band{} (1 to {})",
                    b + 1,
                    self.bands,
                    if self.bands == 1 { "" } else { "s" },
                    self.bands
                ),
            ));
        }
        let samples = (bands.len() as u64)
            .checked_mul(width as u64)
            .and_then(|n| n.checked_mul(height as u64))
            .filter(|&n| n <= MAX_WINDOW_SAMPLES);
        let x_end = i64::try_from(width).ok().and_then(|w| x.checked_add(w));
        let y_end = i64::try_from(height).ok().and_then(|h| y.checked_add(h));
        let (Some(samples), Some(x_end), Some(y_end)) = (samples, x_end, y_end) else {
            return Err(file_error(
                &self.path,
                format!(
                    "a window of {width} x {height} pixels x {} bands at ({x}, {y}) is over the limit of \
                     {MAX_WINDOW_SAMPLES} samples",
                    bands.len()
                ),
            ));
        };
        let fill = self.nodata.map_or(0.0, |v| v as f32);
        out.x = x;
        out.y = y;
        out.width = width;
        out.height = height;
        out.bands = bands.len();
        out.data.clear();
        out.data.resize(samples as usize, fill);
        out.valid.clear();
        out.valid.resize(width * height, false);

        // The part of the window inside the scene, in scene coordinates.
        let x0 = x.max(0);
        let y0 = y.max(0);
        let x1 = x_end.min(self.width as i64);
        let y1 = y_end.min(self.height as i64);
        if x0 >= x1 || y0 >= y1 {
            return Ok(());
        }
        let (x0, y0, x1, y1) = (x0 as usize, y0 as usize, x1 as usize, y1 as usize);
        let (ox, oy) = ((x0 as i64 - x) as usize, (y0 as i64 - y) as usize);
        for row in 0..y1 - y0 {
            let start = (oy + row) * width + ox;
            out.valid[start..start + (x1 - x0)].fill(true);
        }

        // Nodata compared as GDAL does: for f32 data, after rounding the nodata value to f32.
        let nodata = self.nodata.map(|v| match self.sample_type {
            SampleType::F32 => v as f32 as f64,
            _ => v,
        });
        let layout = self.chunks.layout;
        let planes: Vec<usize> = if layout.planes > 1 {
            let mut p = bands.to_vec();
            p.sort_unstable();
            p.dedup();
            p
        } else {
            vec![0]
        };
        for cy in y0 / layout.height..=(y1 - 1) / layout.height {
            let rows_in = layout.rows_in(cy, self.height);
            let chunk_y = cy * layout.height;
            let (r0, r1) = (
                y0.max(chunk_y) - chunk_y,
                y1.min(chunk_y + rows_in) - chunk_y,
            );
            for cx in x0 / layout.width..=(x1 - 1) / layout.width {
                let chunk_x = cx * layout.width;
                let (c0, c1) = (
                    x0.max(chunk_x) - chunk_x,
                    x1.min(chunk_x + layout.width) - chunk_x,
                );
                for &plane in &planes {
                    // (band in the window, sample within a chunk pixel) for every band this chunk supplies.
                    let targets: Vec<(usize, usize)> = bands
                        .iter()
                        .enumerate()
                        .filter(|&(_, &b)| layout.planes == 1 || b == plane)
                        .map(|(i, &b)| (i, if layout.planes == 1 { b } else { 0 }))
                        .collect();
                    let index = layout.index(plane, cy, cx);
                    let copy = CopyRows {
                        sample_type: self.sample_type,
                        samples: layout.samples,
                        nodata,
                        c0,
                        c1,
                        out_col: chunk_x + c0 - x0 + ox,
                        out_row: chunk_y + r0 - y0 + oy,
                        r0,
                        targets: &targets,
                    };
                    if self.chunks.byte_counts[index] == 0 {
                        copy.sparse(out, r1 - r0, fill);
                        continue;
                    }
                    let chunk_bytes = rows_in * layout.row_bytes;
                    if chunk_bytes <= self.cache.capacity / 2 {
                        let chunk = self.cached_chunk(index, rows_in)?;
                        for r in r0..r1 {
                            copy.row(
                                out,
                                r,
                                &chunk[r * layout.row_bytes..(r + 1) * layout.row_bytes],
                            );
                        }
                    } else {
                        let source = self.chunks.source(index);
                        source
                            .rows(
                                &mut self.row,
                                &mut self.predictor_scratch,
                                r0,
                                r1,
                                |r, row| copy.row(out, r, row),
                            )
                            .map_err(|e| self.chunk_error(index, e))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The decoded rows (those inside the scene) of one chunk, from the cache or decoded into it.
    fn cached_chunk(&mut self, index: usize, rows: usize) -> Result<Arc<Vec<u8>>> {
        if let Some(chunk) = self.cache.get(index) {
            return Ok(chunk);
        }
        let row_bytes = self.chunks.layout.row_bytes;
        let mut data = Vec::with_capacity(rows * row_bytes);
        let source = self.chunks.source(index);
        source
            .rows(
                &mut self.row,
                &mut self.predictor_scratch,
                0,
                rows,
                |_, row| data.extend_from_slice(row),
            )
            .map_err(|e| self.chunk_error(index, e))?;
        let data = Arc::new(data);
        self.cache.insert(index, data.clone());
        Ok(data)
    }

    fn chunk_error(&self, index: usize, e: io::Error) -> crate::Error {
        let layout = &self.chunks.layout;
        let per_plane = layout.across * layout.down;
        let band = if layout.planes > 1 {
            format!(" of band {}", index / per_plane + 1)
        } else {
            String::new()
        };
        let what = match e.kind() {
            io::ErrorKind::UnexpectedEof => "data ends early (truncated or corrupt)".to_string(),
            _ => format!("cannot decode: {e}"),
        };
        file_error(
            &self.path,
            format!("{} {}{band}: {what}", layout.kind(), index % per_plane),
        )
    }
}

/// The file and where its strips or tiles are.
#[derive(Debug)]
struct Chunks {
    file: File,
    layout: ChunkLayout,
    compression: Compression,
    format: RowFormat,
    offsets: Vec<u64>,
    byte_counts: Vec<u64>,
}

impl Chunks {
    fn source(&self, index: usize) -> ChunkSource<'_> {
        ChunkSource {
            file: &self.file,
            offset: self.offsets[index],
            byte_count: self.byte_counts[index],
            compression: self.compression,
            row_bytes: self.layout.row_bytes,
            format: self.format,
        }
    }
}

/// Where one chunk's bytes are and how they decode.
struct ChunkSource<'a> {
    file: &'a File,
    offset: u64,
    byte_count: u64,
    compression: Compression,
    row_bytes: usize,
    format: RowFormat,
}

impl ChunkSource<'_> {
    /// Decodes rows `r0..r1` of the chunk, one at a time into `row`, and hands each to `each` with its index.
    /// Rows before `r0` are decompressed and dropped (or, uncompressed, skipped).
    fn rows(
        &self,
        row: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        r0: usize,
        r1: usize,
        mut each: impl FnMut(usize, &[u8]),
    ) -> io::Result<()> {
        let mut file = self.file;
        row.resize(self.row_bytes, 0);
        let skip = if self.compression == Compression::None {
            let start = (r0 * self.row_bytes) as u64;
            file.seek(SeekFrom::Start(self.offset + start))?;
            r0
        } else {
            file.seek(SeekFrom::Start(self.offset))?;
            0
        };
        let limited = BufReader::with_capacity(64 << 10, file.take(self.byte_count));
        let mut input = decompressor(self.compression, limited);
        for r in skip..r1 {
            input.read_exact(row)?;
            if r >= r0 {
                self.format.finish_row(row, scratch);
                each(r, row);
            }
        }
        Ok(())
    }
}

/// Copies a chunk's rows into a window.
struct CopyRows<'a> {
    sample_type: SampleType,
    /// Samples per pixel in the chunk.
    samples: usize,
    nodata: Option<f64>,
    /// Columns of the chunk to copy.
    c0: usize,
    c1: usize,
    /// Window column and row receiving chunk column `c0` of chunk row `r0`.
    out_col: usize,
    out_row: usize,
    r0: usize,
    /// (window band, sample within a chunk pixel).
    targets: &'a [(usize, usize)],
}

impl CopyRows<'_> {
    fn row(&self, out: &mut Window, r: usize, row: &[u8]) {
        match self.sample_type {
            SampleType::U8 => self.row_of::<u8>(out, r, row),
            SampleType::I8 => self.row_of::<i8>(out, r, row),
            SampleType::U16 => self.row_of::<u16>(out, r, row),
            SampleType::I16 => self.row_of::<i16>(out, r, row),
            SampleType::U32 => self.row_of::<u32>(out, r, row),
            SampleType::I32 => self.row_of::<i32>(out, r, row),
            SampleType::F32 => self.row_of::<f32>(out, r, row),
            SampleType::F64 => self.row_of::<f64>(out, r, row),
        }
    }

    fn row_of<T: Native>(&self, out: &mut Window, r: usize, row: &[u8]) {
        let out_row = self.out_row + (r - self.r0);
        let (w, h) = (out.width, out.height);
        let n = self.c1 - self.c0;
        let valid_start = out_row * w + self.out_col;
        for &(band, sample) in self.targets {
            let start = (band * h + out_row) * w + self.out_col;
            let dst = &mut out.data[start..start + n];
            let valid = &mut out.valid[valid_start..valid_start + n];
            for (i, (d, ok)) in dst.iter_mut().zip(valid.iter_mut()).enumerate() {
                let at = ((self.c0 + i) * self.samples + sample) * T::BYTES;
                let v = T::read(&row[at..at + T::BYTES]).to_f64();
                *d = v as f32;
                if v.is_nan() || Some(v) == self.nodata {
                    *ok = false;
                }
            }
        }
    }

    /// A chunk the file leaves out (offset and byte count 0): the fill value, invalid where there is nodata.
    fn sparse(&self, out: &mut Window, rows: usize, fill: f32) {
        let (w, h) = (out.width, out.height);
        let n = self.c1 - self.c0;
        for row in self.out_row..self.out_row + rows {
            for &(band, _) in self.targets {
                let start = (band * h + row) * w + self.out_col;
                out.data[start..start + n].fill(fill);
            }
            if self.nodata.is_some() {
                out.valid[row * w + self.out_col..row * w + self.out_col + n].fill(false);
            }
        }
    }
}

/// A sample type read from native-endian bytes.
trait Native: Copy {
    const BYTES: usize;
    fn read(bytes: &[u8]) -> Self;
    fn to_f64(self) -> f64;
}

macro_rules! native {
    ($($t:ty),*) => {$(
        impl Native for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            #[inline]
            fn read(bytes: &[u8]) -> Self {
                <$t>::from_ne_bytes(bytes.try_into().unwrap())
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
native!(u8, i8, u16, i16, u32, i32, f32, f64);

/// Decoded chunks, least recently used evicted first, at most `capacity` bytes in all.
#[derive(Debug)]
struct ChunkCache {
    capacity: usize,
    used: usize,
    clock: u64,
    entries: HashMap<usize, (u64, Arc<Vec<u8>>)>,
}

impl ChunkCache {
    fn new(capacity: usize) -> Self {
        ChunkCache {
            capacity,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    fn get(&mut self, index: usize) -> Option<Arc<Vec<u8>>> {
        self.clock += 1;
        let entry = self.entries.get_mut(&index)?;
        entry.0 = self.clock;
        Some(entry.1.clone())
    }

    fn insert(&mut self, index: usize, data: Arc<Vec<u8>>) {
        if data.len() > self.capacity {
            return;
        }
        while self.used + data.len() > self.capacity {
            let Some((&oldest, _)) = self.entries.iter().min_by_key(|(_, (used, _))| *used) else {
                break;
            };
            if let Some((_, old)) = self.entries.remove(&oldest) {
                self.used -= old.len();
            }
        }
        self.clock += 1;
        self.used += data.len();
        if let Some((_, old)) = self.entries.insert(index, (self.clock, data)) {
            self.used -= old.len();
        }
    }
}

/// What `open` needs from the TIFF header, read through the `tiff` crate.
struct Header {
    width: usize,
    height: usize,
    bands: usize,
    bits: Vec<u16>,
    sample_formats: Vec<u16>,
    compression: u16,
    photometric: u16,
    predictor: u16,
    planar: bool,
    tile: Option<(u32, u32)>,
    rows_per_strip: u32,
    offsets: Vec<u64>,
    byte_counts: Vec<u64>,
    nodata_text: Option<String>,
    geo: GeoTags,
}

fn read_header<R: Read + Seek>(d: &mut Decoder<R>) -> tiff::TiffResult<Header> {
    fn u16s<R: Read + Seek>(d: &mut Decoder<R>, tag: Tag) -> tiff::TiffResult<Option<Vec<u16>>> {
        d.find_tag(tag)?.map(|v| v.into_u16_vec()).transpose()
    }
    fn one<R: Read + Seek>(d: &mut Decoder<R>, tag: Tag, default: u16) -> tiff::TiffResult<u16> {
        Ok(d.find_tag(tag)?
            .map(|v| v.into_u16())
            .transpose()?
            .unwrap_or(default))
    }
    let (width, height) = d.dimensions()?;
    let bands = one(d, Tag::SamplesPerPixel, 1)?;
    let spread = |values: Option<Vec<u16>>, default: u16| -> Vec<u16> {
        match values {
            Some(v) if v.len() == usize::from(bands) => v,
            // One value for all bands (as libtiff allows), or none: the default.
            Some(v) if !v.is_empty() => vec![v[0]; usize::from(bands)],
            _ => vec![default; usize::from(bands)],
        }
    };
    let bits = spread(u16s(d, Tag::BitsPerSample)?, 1);
    let sample_formats = spread(u16s(d, Tag::SampleFormat)?, 1);
    let tiled = d.find_tag(Tag::TileOffsets)?.is_some();
    let tile = if tiled {
        Some((
            d.get_tag_u32(Tag::TileWidth)?,
            d.get_tag_u32(Tag::TileLength)?,
        ))
    } else {
        None
    };
    let rows_per_strip = d
        .find_tag(Tag::RowsPerStrip)?
        .map(|v| v.into_u32())
        .transpose()?
        .unwrap_or(u32::MAX);
    let (offsets_tag, counts_tag) = if tiled {
        (Tag::TileOffsets, Tag::TileByteCounts)
    } else {
        (Tag::StripOffsets, Tag::StripByteCounts)
    };
    Ok(Header {
        width: width as usize,
        height: height as usize,
        bands: usize::from(bands),
        bits,
        sample_formats,
        compression: one(d, Tag::Compression, 1)?,
        photometric: one(d, Tag::PhotometricInterpretation, 1)?,
        predictor: one(d, Tag::Predictor, 1)?,
        planar: one(d, Tag::PlanarConfiguration, 1)? == 2,
        tile,
        rows_per_strip,
        offsets: d.get_tag_u64_vec(offsets_tag)?,
        byte_counts: d.get_tag_u64_vec(counts_tag)?,
        nodata_text: d
            .find_tag(Tag::from_u16_exhaustive(tags::GDAL_NODATA))?
            .map(|v| v.into_string())
            .transpose()?,
        geo: GeoTags::read(d)?,
    })
}

/// Walks the first image directory by hand before the `tiff` crate reads it, so that every tag value it will
/// allocate for is known to lie inside the file: a crafted count cannot make it reserve more than the file holds.
/// Returns whether the file is big-endian.
fn check_first_directory(file: &File, len: u64) -> std::result::Result<bool, String> {
    let mut f = file;
    let mut head = [0u8; 16];
    let n = (len.min(16)) as usize;
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    f.read_exact(&mut head[..n]).map_err(|e| e.to_string())?;
    if n < 8 {
        return Err(format!("only {len} bytes, too short for a TIFF header"));
    }
    let little = match &head[..2] {
        b"II" => true,
        b"MM" => false,
        _ => return Err("no TIFF signature (II or MM)".to_string()),
    };
    let u16_at = |b: &[u8]| {
        let b = [b[0], b[1]];
        if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32_at = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let u64_at = |b: &[u8]| {
        let b: [u8; 8] = b[..8].try_into().unwrap();
        if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    let (big, ifd) = match u16_at(&head[2..4]) {
        42 => (false, u64::from(u32_at(&head[4..8]))),
        43 if n == 16 && u16_at(&head[4..6]) == 8 && u16_at(&head[6..8]) == 0 => {
            (true, u64_at(&head[8..16]))
        }
        43 => return Err("malformed BigTIFF header".to_string()),
        v => return Err(format!("unknown TIFF version {v} (42 or 43 expected)")),
    };
    let (count_bytes, entry_bytes, inline) = if big { (8u64, 20u64, 8u64) } else { (2, 12, 4) };
    let past_end = || {
        format!("the image directory (at byte {ifd}) runs past the end of the file ({len} bytes): truncated?")
    };
    if ifd.checked_add(count_bytes).is_none_or(|end| end > len) {
        return Err(past_end());
    }
    f.seek(SeekFrom::Start(ifd)).map_err(|e| e.to_string())?;
    let mut count = [0u8; 8];
    f.read_exact(&mut count[..count_bytes as usize])
        .map_err(|e| e.to_string())?;
    let entries = if big {
        u64_at(&count)
    } else {
        u64::from(u16_at(&count))
    };
    // Real directories have tens of entries; GDAL writes at most a few dozen.
    if entries > 4096 {
        return Err(format!("an image directory of {entries} entries"));
    }
    let dir_bytes = entries * entry_bytes;
    if (ifd + count_bytes)
        .checked_add(dir_bytes)
        .is_none_or(|end| end > len)
    {
        return Err(past_end());
    }
    let mut dir = vec![0u8; dir_bytes as usize];
    f.read_exact(&mut dir).map_err(|e| e.to_string())?;
    for entry in dir.chunks_exact(entry_bytes as usize) {
        let tag = u16_at(&entry[0..2]);
        let size: u64 = match u16_at(&entry[2..4]) {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16..=18 => 8,
            _ => continue, // Unknown types are skipped by the reader too.
        };
        let (count, offset) = if big {
            (u64_at(&entry[4..12]), u64_at(&entry[12..20]))
        } else {
            (
                u64::from(u32_at(&entry[4..8])),
                u64::from(u32_at(&entry[8..12])),
            )
        };
        let bytes = count.checked_mul(size);
        if bytes.is_some_and(|b| b <= inline) {
            continue;
        }
        if bytes
            .and_then(|b| offset.checked_add(b))
            .is_none_or(|end| end > len)
        {
            return Err(format!(
                "tag {tag}'s {count} values at byte {offset} run past the end of the file ({len} bytes): truncated?"
            ));
        }
    }
    Ok(!little)
}
