//! Incremental writing of tiled, deflate-compressed GeoTIFFs.
//!
//! The `tiff` crate's encoder writes strips only, so the container is written here. Layout of a file:
//!
//! ```text
//! header (8 bytes, or 16 for BigTIFF)  -- its directory offset patched in by finish()
//! tile, tile, ...                      -- each compressed and written as soon as its row of tiles is complete,
//!                                         in any order (TIFF finds tiles through the offset table)
//! image directory (IFD)                -- written by finish(): sorted tag entries, then the values too long to
//!                                         sit in an entry (tile offsets and byte counts, georeferencing, nodata)
//! ```
//!
//! Rows come in vertical strips of whole tile columns (a strip can be the whole width), each strip top to bottom
//! and the strips left to right: a tiled writer only ever holds one row of one strip's tiles, so a caller that
//! produces a scene strip by strip (as tiled inference does for wide scenes) needs no buffer as wide as the scene.
//! The tile offsets and byte counts are kept for the directory: 16 bytes per tile and band.
//!
//! Bands are stored planar (PlanarConfiguration 2: one set of tiles per band, GDAL's INTERLEAVE=BAND), little
//! endian, with GDAL's conventions: MinIsBlack, the bands after the first as unspecified ExtraSamples, nodata as
//! ASCII in tag 42113.

use super::geo::{tags, GeoTags};
use super::{file_error, SampleType, MAX_SCENE_BYTES};
use crate::error::Result;
use crate::image_io::StagedFile;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The most bytes a writer's row of tiles may hold (4 GiB).
const MAX_TILE_ROW_BYTES: u64 = 4 << 30;

/// What a [`RasterWriter`] writes: size, bands, sample type, tile size, georeferencing and nodata.
#[derive(Clone, Debug, PartialEq)]
pub struct WriterSpec {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bands.
    pub bands: usize,
    /// The stored sample type; [`RasterWriter::write_rows`] takes samples of this type.
    pub sample_type: SampleType,
    /// Tile width and height: a multiple of 16 from 16 to 4096 (256 by default).
    pub tile: usize,
    /// Georeferencing tags, copied as they are (usually [`Raster::geo`](super::Raster::geo) of the input).
    pub geo: GeoTags,
    /// The nodata value, written as GDAL_NODATA (tag 42113); it also pads the edge tiles.
    pub nodata: Option<f64>,
    /// BigTIFF: `Some(true)` always, `Some(false)` never, `None` (the default) where the file could pass 4 GiB.
    pub bigtiff: Option<bool>,
    /// Deflate level, 0 to 9. 1 by default: on a 3,000 x 3,000 class map it wrote a file as small as level 6
    /// (GDAL's default) did, in 40% of the time (deflate dominates writing).
    pub deflate_level: u32,
}

impl WriterSpec {
    /// A spec with 256 x 256 tiles, no georeferencing, no nodata, BigTIFF where needed and deflate level 1.
    pub fn new(width: usize, height: usize, bands: usize, sample_type: SampleType) -> Self {
        WriterSpec {
            width,
            height,
            bands,
            sample_type,
            tile: 256,
            geo: GeoTags::default(),
            nodata: None,
            bigtiff: None,
            deflate_level: 1,
        }
    }

    /// Sets the tile size.
    pub fn tile(mut self, tile: usize) -> Self {
        self.tile = tile;
        self
    }

    /// Sets the georeferencing tags.
    pub fn geo(mut self, geo: GeoTags) -> Self {
        self.geo = geo;
        self
    }

    /// Sets the nodata value.
    pub fn nodata(mut self, nodata: Option<f64>) -> Self {
        self.nodata = nodata;
        self
    }

    /// Forces BigTIFF on or off (`None`: where the file could pass 4 GiB).
    pub fn bigtiff(mut self, bigtiff: Option<bool>) -> Self {
        self.bigtiff = bigtiff;
        self
    }

    /// Sets the deflate level (0 to 9).
    pub fn deflate_level(mut self, level: u32) -> Self {
        self.deflate_level = level;
        self
    }
}

/// A sample type a [`RasterWriter`] stores: u8, i8, u16, i16, u32, i32, f32 or f64.
pub trait Sample: Copy + sealed::Sealed {
    /// The matching [`SampleType`].
    const TYPE: SampleType;
    /// Writes the sample's little-endian bytes into `out` (`TYPE.bytes()` long).
    fn put_le(self, out: &mut [u8]);
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! sample {
    ($($t:ty => $v:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Sample for $t {
            const TYPE: SampleType = SampleType::$v;
            #[inline]
            fn put_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
sample!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32, f64 => F64);

/// The little-endian bytes of `value` as a sample of type `t` (saturating; NaN becomes 0 for integers).
fn encode(t: SampleType, value: f64) -> Vec<u8> {
    match t {
        SampleType::U8 => (value as u8).to_le_bytes().to_vec(),
        SampleType::I8 => (value as i8).to_le_bytes().to_vec(),
        SampleType::U16 => (value as u16).to_le_bytes().to_vec(),
        SampleType::I16 => (value as i16).to_le_bytes().to_vec(),
        SampleType::U32 => (value as u32).to_le_bytes().to_vec(),
        SampleType::I32 => (value as i32).to_le_bytes().to_vec(),
        SampleType::F32 => (value as f32).to_le_bytes().to_vec(),
        SampleType::F64 => value.to_le_bytes().to_vec(),
    }
}

/// The nodata value as GDAL writes it in tag 42113.
fn nodata_text(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{v}")
    }
}

/// Writes a tiled, deflate-compressed GeoTIFF row by row, or strip by strip of whole tile columns (see the
/// [module](self)). Memory: one row of tiles of the current strip's pixels, one tile and its compressed bytes, and
/// the tile offset table (16 bytes per tile and band).
///
/// The file is written under a temporary name in the destination's folder and renamed into place by
/// [`RasterWriter::finish`]; a writer dropped before that (an error, a panic) removes its temporary file, so
/// nothing partial is ever left under the final name.
#[derive(Debug)]
pub struct RasterWriter {
    // Declared before `staged` so the file is closed before a dropped writer removes it.
    file: BufWriter<File>,
    staged: StagedFile,
    path: PathBuf,
    spec: WriterSpec,
    bigtiff: bool,
    /// Bytes written so far (the position of the next tile).
    pos: u64,
    /// The current strip's first column and width: `(0, 0)` before the first rows.
    strip: (usize, usize),
    /// Rows of the current strip received so far (`height` once it is complete).
    rows_done: usize,
    tiles_across: usize,
    tiles_down: usize,
    /// The current strip's row of tiles' pixels: `bands x tile x strip width` samples, little endian.
    tile_row: Vec<u8>,
    /// One tile, assembled from `tile_row` and padded.
    tile_buf: Vec<u8>,
    /// One tile, compressed.
    compressed: Vec<u8>,
    /// The bytes of one sample of the nodata value (or 0), padding edge tiles.
    fill: Vec<u8>,
    /// Tile offsets and byte counts, in TIFF's order: band, tile row, tile column.
    offsets: Vec<u64>,
    byte_counts: Vec<u64>,
}

impl RasterWriter {
    /// Starts writing `path` as `spec` says: checks the spec, creates the temporary file and writes the header.
    pub fn create(path: impl AsRef<Path>, spec: &WriterSpec) -> Result<RasterWriter> {
        let path = path.as_ref();
        let fail = |m: String| file_error(path, m);
        let WriterSpec {
            width,
            height,
            bands,
            sample_type,
            tile,
            ..
        } = *spec;
        if width == 0 || height == 0 || width > u32::MAX as usize || height > u32::MAX as usize {
            return Err(fail(format!(
                "cannot write a raster of {width} x {height} pixels (1 to {} each way)",
                u32::MAX
            )));
        }
        if bands == 0 || bands > usize::from(u16::MAX) {
            return Err(fail(format!(
                "cannot write {bands} bands (1 to {})",
                u16::MAX
            )));
        }
        if tile == 0 || tile % 16 != 0 || tile > 4096 {
            return Err(fail(format!(
                "tile size {tile} is not a multiple of 16 from 16 to 4096"
            )));
        }
        if spec.deflate_level > 9 {
            return Err(fail(format!(
                "deflate level {} is not from 0 to 9",
                spec.deflate_level
            )));
        }
        let sample_bytes = sample_type.bytes() as u64;
        let scene_bytes = (width as u64)
            .checked_mul(height as u64)
            .and_then(|n| n.checked_mul(bands as u64))
            .and_then(|n| n.checked_mul(sample_bytes))
            .filter(|&n| n <= MAX_SCENE_BYTES)
            .ok_or_else(|| {
                fail(format!(
                    "a raster of {width} x {height} x {bands} {sample_type} samples is over the limit of \
                     {MAX_SCENE_BYTES} bytes"
                ))
            })?;
        // A full-width strip's row of tiles must fit: checked once here, allocated per strip.
        (bands as u64 * tile as u64)
            .checked_mul(width as u64 * sample_bytes)
            .filter(|&n| n <= MAX_TILE_ROW_BYTES)
            .ok_or_else(|| {
                fail(format!(
                    "a row of {tile}-pixel tiles of {width} x {bands} {sample_type} samples is over the limit of \
                     {MAX_TILE_ROW_BYTES} bytes; use a smaller tile or fewer bands"
                ))
            })?;
        let tiles_across = width.div_ceil(tile);
        let tiles_down = height.div_ceil(tile);
        let tiles = tiles_across * tiles_down * bands;
        let tile_bytes = (tile * tile) as u64 * sample_bytes;

        // BigTIFF where the file could pass 4 GiB: every tile at deflate's worst case (a little over its raw
        // size), plus the directory and its tables.
        let worst = 16
            + tiles as u64 * (tile_bytes + tile_bytes / 256 + 64 + 16)
            + geo_bytes(&spec.geo)
            + 4096;
        let _ = scene_bytes;
        let bigtiff = spec.bigtiff.unwrap_or(worst > u64::from(u32::MAX));

        let (staged, file) = StagedFile::create(path)?;
        let mut file = BufWriter::with_capacity(256 << 10, file);
        let header: &[u8] = if bigtiff {
            // "II", 43, offset size 8, 0, then the first directory's offset (patched by finish).
            &[b'I', b'I', 43, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        } else {
            // "II", 42, then the first directory's offset (patched by finish).
            &[b'I', b'I', 42, 0, 0, 0, 0, 0]
        };
        file.write_all(header)
            .map_err(|e| fail(format!("cannot write: {e}")))?;
        Ok(RasterWriter {
            file,
            staged,
            path: path.to_path_buf(),
            spec: spec.clone(),
            bigtiff,
            pos: header.len() as u64,
            strip: (0, 0),
            // The empty strip before the first is complete, so the first rows start a strip at column 0.
            rows_done: height,
            tiles_across,
            tiles_down,
            // Sized for the whole width (at most MAX_TILE_ROW_BYTES, checked above) lazily: a strip allocates
            // only its own columns.
            tile_row: Vec::new(),
            tile_buf: Vec::with_capacity(tile_bytes as usize),
            compressed: Vec::new(),
            fill: encode(sample_type, spec.nodata.unwrap_or(0.0)),
            offsets: vec![0; tiles],
            byte_counts: vec![0; tiles],
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is being written as BigTIFF.
    pub fn is_bigtiff(&self) -> bool {
        self.bigtiff
    }

    /// Rows of the current strip received so far (the next `write_rows` of that strip starts there): after full
    /// width `write_rows`, the rows written.
    pub fn rows_written(&self) -> usize {
        match self.strip {
            (_, 0) => 0,
            _ => self.rows_done,
        }
    }

    /// Bytes of pixel data the writer holds now: its row of tiles, plus one tile and its compressed bytes. At
    /// most one row of tiles plus a tile or two, however tall the raster (the tile offset table aside).
    pub fn buffered_bytes(&self) -> usize {
        self.tile_row.capacity() + self.tile_buf.capacity() + self.compressed.capacity()
    }

    /// Appends rows `y0 .. y0 + rows` of the full width: `y0` must be the number of rows written so far. `data` is
    /// band-major, `bands x rows x width` (`data[(band * rows + row) * width + col]`), of the spec's sample type.
    /// Each row of tiles completed is compressed and written at once.
    pub fn write_rows<T: Sample>(&mut self, y0: usize, rows: usize, data: &[T]) -> Result<()> {
        self.write_block(0, y0, self.spec.width, rows, data)
    }

    /// Appends rows `y0 .. y0 + rows` of the strip of columns `x0 .. x0 + cols`. A strip is whole tile columns:
    /// `x0` a multiple of the tile size, and `cols` too unless the strip ends at the raster's right edge. Strips
    /// come left to right, each complete (all its rows, top to bottom) before the next starts at its right edge.
    /// `data` is band-major, `bands x rows x cols`, of the spec's sample type. Each row of tiles completed is
    /// compressed and written at once.
    pub fn write_block<T: Sample>(
        &mut self,
        x0: usize,
        y0: usize,
        cols: usize,
        rows: usize,
        data: &[T],
    ) -> Result<()> {
        let spec = &self.spec;
        let (width, height, bands, tile) = (spec.width, spec.height, spec.bands, spec.tile);
        if T::TYPE != spec.sample_type {
            return Err(file_error(
                &self.path,
                format!(
                    "write_rows got {} samples for a {} raster",
                    T::TYPE,
                    spec.sample_type
                ),
            ));
        }
        let (sx, scols) = self.strip;
        if (x0, cols) != (sx, scols) || self.rows_done == height {
            // A new strip: the current one complete, this one starting at its right edge, on tile columns.
            let next = sx + scols;
            if self.rows_done != height || x0 != next || y0 != 0 {
                return Err(file_error(
                    &self.path,
                    format!(
                        "rows {y0}.. of columns {x0}..{} written out of order: strips come left to right, each \
                         top to bottom; {} of {height} rows of columns {sx}..{next} written so far",
                        x0 as u128 + cols as u128,
                        self.rows_done
                    ),
                ));
            }
            if cols == 0 || cols > width - x0 || (x0 + cols != width && cols % tile != 0) {
                return Err(file_error(
                    &self.path,
                    format!(
                        "columns {x0}..{} are not whole {tile}-pixel tile columns of a raster {width} pixels wide",
                        x0 as u128 + cols as u128
                    ),
                ));
            }
            self.strip = (x0, cols);
            self.rows_done = 0;
            // Whole tiles wide: the strip's last tile column is padded like the raster's.
            self.tile_row.resize(
                bands * tile * cols.next_multiple_of(tile) * T::TYPE.bytes(),
                0,
            );
        }
        if y0 != self.rows_done || rows > height - self.rows_done {
            return Err(file_error(
                &self.path,
                format!(
                    "rows {y0}..{} written out of order or past the end: {} of {height} rows written so far",
                    y0 as u128 + rows as u128,
                    self.rows_done
                ),
            ));
        }
        if Some(data.len()) != bands.checked_mul(rows).and_then(|n| n.checked_mul(cols)) {
            return Err(file_error(
                &self.path,
                format!(
                    "write_rows got {} samples for {rows} rows of {cols} pixels x {bands} bands",
                    data.len()
                ),
            ));
        }
        let n = T::TYPE.bytes();
        let stride = cols.next_multiple_of(tile);
        for r in 0..rows {
            let y = y0 + r;
            let t = y % tile;
            for b in 0..bands {
                let src = &data[(b * rows + r) * cols..(b * rows + r + 1) * cols];
                let start = (b * tile + t) * stride * n;
                let dst = &mut self.tile_row[start..start + cols * n];
                for (v, out) in src.iter().zip(dst.chunks_exact_mut(n)) {
                    v.put_le(out);
                }
            }
            self.rows_done = y + 1;
            if t == tile - 1 || y + 1 == height {
                self.flush_tile_row(y / tile, t + 1)?;
            }
        }
        Ok(())
    }

    /// Compresses and writes the current strip's tiles of tile row `ty`, whose first `filled` rows hold data.
    fn flush_tile_row(&mut self, ty: usize, filled: usize) -> Result<()> {
        let spec = &self.spec;
        let (tile, n) = (spec.tile, spec.sample_type.bytes());
        let (sx, scols) = self.strip;
        let stride = scols.next_multiple_of(tile);
        let level = flate2::Compression::new(spec.deflate_level);
        for b in 0..spec.bands {
            for tx in sx / tile..(sx + scols).div_ceil(tile) {
                let x0 = tx * tile - sx;
                let cols = tile.min(scols - x0);
                self.tile_buf.clear();
                for row in 0..tile {
                    if row < filled {
                        let start = ((b * tile + row) * stride + x0) * n;
                        self.tile_buf
                            .extend_from_slice(&self.tile_row[start..start + cols * n]);
                        for _ in cols..tile {
                            self.tile_buf.extend_from_slice(&self.fill);
                        }
                    } else {
                        for _ in 0..tile {
                            self.tile_buf.extend_from_slice(&self.fill);
                        }
                    }
                }
                self.compressed.clear();
                let mut encoder = flate2::write::ZlibEncoder::new(&mut self.compressed, level);
                let written = encoder
                    .write_all(&self.tile_buf)
                    .and_then(|()| encoder.finish().map(|_| ()))
                    .and_then(|()| self.file.write_all(&self.compressed));
                written.map_err(|e| file_error(&self.path, format!("cannot write: {e}")))?;
                let index = (b * self.tiles_down + ty) * self.tiles_across + tx;
                self.offsets[index] = self.pos;
                self.byte_counts[index] = self.compressed.len() as u64;
                self.pos += self.compressed.len() as u64;
            }
        }
        if !self.bigtiff && self.pos > u64::from(u32::MAX) {
            return Err(file_error(
                &self.path,
                "the file passed 4 GiB without BigTIFF (set WriterSpec::bigtiff)",
            ));
        }
        Ok(())
    }

    /// Writes the image directory, syncs the file and renames it into place. Every row must have been written.
    pub fn finish(self) -> Result<()> {
        self.finish_staged()?.commit()
    }

    /// Like [`RasterWriter::finish`], but leaves the complete, synced file under its temporary name: commit the
    /// returned [`StagedFile`] (or several, with [`commit_all`](crate::image_io::commit_all)) to put it in place.
    pub fn finish_staged(self) -> Result<StagedFile> {
        let RasterWriter {
            mut file,
            staged,
            path,
            spec,
            bigtiff,
            pos,
            strip,
            rows_done,
            offsets,
            byte_counts,
            ..
        } = self;
        let fail = |e: std::io::Error| file_error(&path, format!("cannot write: {e}"));
        if rows_done != spec.height || strip.0 + strip.1 != spec.width {
            return Err(file_error(
                &path,
                format!(
                    "finish after {rows_done} of {} rows of columns {}..{} of {}: the raster is incomplete",
                    spec.height,
                    strip.0,
                    strip.0 + strip.1,
                    spec.width
                ),
            ));
        }
        let bands = spec.bands as u16;
        let mut ifd = Directory::new(bigtiff);
        ifd.long(256, &[spec.width as u32]);
        ifd.long(257, &[spec.height as u32]);
        ifd.short(258, &vec![spec.sample_type.bytes() as u16 * 8; spec.bands]);
        ifd.short(259, &[8]); // Deflate (zlib).
        ifd.short(262, &[1]); // MinIsBlack.
        ifd.short(277, &[bands]);
        ifd.short(284, &[if bands > 1 { 2 } else { 1 }]); // Planar for several bands.
        ifd.short(322, &[spec.tile as u16]);
        ifd.short(323, &[spec.tile as u16]);
        if bigtiff {
            ifd.long8(324, &offsets);
            ifd.long8(325, &byte_counts);
        } else {
            // Checked against 4 GiB as the tiles were written.
            ifd.long(324, &offsets.iter().map(|&o| o as u32).collect::<Vec<_>>());
            ifd.long(
                325,
                &byte_counts.iter().map(|&c| c as u32).collect::<Vec<_>>(),
            );
        }
        if bands > 1 {
            ifd.short(338, &vec![0; spec.bands - 1]); // The other bands: unspecified extra samples.
        }
        ifd.short(
            339,
            &vec![spec.sample_type.tiff_sample_format(); spec.bands],
        );
        let geo = &spec.geo;
        if let Some(v) = &geo.model_pixel_scale {
            ifd.double(tags::MODEL_PIXEL_SCALE, v);
        }
        if let Some(v) = &geo.model_tiepoint {
            ifd.double(tags::MODEL_TIEPOINT, v);
        }
        if let Some(v) = &geo.model_transformation {
            ifd.double(tags::MODEL_TRANSFORMATION, v);
        }
        if let Some(v) = &geo.geo_key_directory {
            ifd.short(tags::GEO_KEY_DIRECTORY, v);
        }
        if let Some(v) = &geo.geo_double_params {
            ifd.double(tags::GEO_DOUBLE_PARAMS, v);
        }
        if let Some(v) = &geo.geo_ascii_params {
            ifd.ascii(tags::GEO_ASCII_PARAMS, v);
        }
        if let Some(v) = spec.nodata {
            ifd.ascii(tags::GDAL_NODATA, &nodata_text(v));
        }
        // Directory at the next word boundary (8 bytes for BigTIFF).
        let align = if bigtiff { 8 } else { 2 };
        let ifd_offset = pos.next_multiple_of(align);
        let bytes = ifd.encode(ifd_offset);
        if !bigtiff && ifd_offset + bytes.len() as u64 > u64::from(u32::MAX) {
            return Err(file_error(
                &path,
                "the file passed 4 GiB without BigTIFF (set WriterSpec::bigtiff)",
            ));
        }
        file.write_all(&vec![0; (ifd_offset - pos) as usize])
            .and_then(|()| file.write_all(&bytes))
            .and_then(|()| {
                if bigtiff {
                    file.seek(SeekFrom::Start(8))?;
                    file.write_all(&ifd_offset.to_le_bytes())
                } else {
                    file.seek(SeekFrom::Start(4))?;
                    file.write_all(&(ifd_offset as u32).to_le_bytes())
                }
            })
            .and_then(|()| file.flush())
            .map_err(fail)?;
        let file = file.into_inner().map_err(|e| fail(e.into_error()))?;
        file.sync_all().map_err(fail)?;
        drop(file);
        Ok(staged)
    }
}

/// Bytes the georeferencing tags take in a directory (an upper bound).
fn geo_bytes(geo: &GeoTags) -> u64 {
    let doubles = |v: &Option<Vec<f64>>| v.as_ref().map_or(0, |v| v.len() as u64 * 8);
    doubles(&geo.model_pixel_scale)
        + doubles(&geo.model_tiepoint)
        + doubles(&geo.model_transformation)
        + doubles(&geo.geo_double_params)
        + geo
            .geo_key_directory
            .as_ref()
            .map_or(0, |v| v.len() as u64 * 2)
        + geo
            .geo_ascii_params
            .as_ref()
            .map_or(0, |s| s.len() as u64 + 1)
        + 7 * 20
}

/// One image directory being assembled: entries of (tag, TIFF type, count, little-endian value bytes).
struct Directory {
    bigtiff: bool,
    entries: Vec<(u16, u16, u64, Vec<u8>)>,
}

impl Directory {
    fn new(bigtiff: bool) -> Self {
        Directory {
            bigtiff,
            entries: Vec::new(),
        }
    }

    fn short(&mut self, tag: u16, v: &[u16]) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.entries.push((tag, 3, v.len() as u64, bytes));
    }

    fn long(&mut self, tag: u16, v: &[u32]) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.entries.push((tag, 4, v.len() as u64, bytes));
    }

    fn long8(&mut self, tag: u16, v: &[u64]) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.entries.push((tag, 16, v.len() as u64, bytes));
    }

    fn double(&mut self, tag: u16, v: &[f64]) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.entries.push((tag, 12, v.len() as u64, bytes));
    }

    /// ASCII, NUL-terminated.
    fn ascii(&mut self, tag: u16, s: &str) {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        self.entries.push((tag, 2, bytes.len() as u64, bytes));
    }

    /// The directory as it lies in the file at `offset`: entry count, entries sorted by tag, the next directory's
    /// offset (0: none), then each value longer than an entry's value field (4 bytes, 8 for BigTIFF), aligned.
    fn encode(mut self, offset: u64) -> Vec<u8> {
        self.entries.sort_by_key(|e| e.0);
        let big = self.bigtiff;
        let (count_bytes, entry_bytes, field) = if big { (8, 20, 8) } else { (2, 12, 4) };
        let align = if big { 8 } else { 2 };
        let head = count_bytes + self.entries.len() * entry_bytes + field;
        let mut out = Vec::with_capacity(head);
        let mut values: Vec<u8> = Vec::new();
        let put_offset = |out: &mut Vec<u8>, v: u64| {
            if big {
                out.extend_from_slice(&v.to_le_bytes());
            } else {
                out.extend_from_slice(&(v as u32).to_le_bytes());
            }
        };
        if big {
            out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        } else {
            out.extend_from_slice(&(self.entries.len() as u16).to_le_bytes());
        }
        for (tag, kind, count, bytes) in &self.entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            put_offset(&mut out, *count);
            if bytes.len() <= field {
                let mut inline = bytes.clone();
                inline.resize(field, 0);
                out.extend_from_slice(&inline);
            } else {
                while (offset + (head + values.len()) as u64) % align != 0 {
                    values.push(0);
                }
                put_offset(&mut out, offset + (head + values.len()) as u64);
                values.extend_from_slice(bytes);
            }
        }
        put_offset(&mut out, 0);
        out.extend_from_slice(&values);
        out
    }
}
