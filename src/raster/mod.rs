//! Georeferenced rasters in and out: windowed reading of (Geo)TIFF scenes of any size, and incremental writing of
//! tiled, deflate-compressed GeoTIFFs, each with memory bounded by the window or the tile row, never by the scene.
//!
//! Reading ([`Raster`]): classic TIFF and BigTIFF, either byte order, stripped or tiled, pixel-interleaved
//! (chunky) or band-interleaved (planar), uncompressed, LZW, deflate or PackBits, with or without a horizontal or
//! floating-point predictor; any number of bands of [`SampleType`] (u8, i8, u16, i16, u32, i32, f32, f64). A
//! window ([`Raster::read_window`]) decodes only the strips or tiles that overlap it (a small, bounded cache keeps
//! recently decoded ones), may reach past the scene's edges, and comes back as f32 band planes with a validity
//! mask: outside the scene, equal to the nodata value, or NaN is invalid. The nodata value comes from GDAL's tag
//! (42113) or the caller ([`Raster::set_nodata`]).
//!
//! Writing ([`RasterWriter`]): a tiled (planar) deflate GeoTIFF, BigTIFF where the output could pass 4 GiB,
//! written to a temporary file in the destination's folder and renamed into place by
//! [`RasterWriter::finish`]; rows arrive in order and each completed row of tiles is compressed, written and
//! dropped. The georeferencing tags ([`GeoTags`]) and nodata are copied as they are.
//!
//! Every malformed or unsupported file is an [`Error::File`] naming it and the problem; sizes
//! from headers are checked (with checked arithmetic and the limits below) before anything is allocated.

mod codec;
mod geo;
mod reader;
mod writer;

pub use geo::GeoTags;
pub use reader::{Raster, Window};
pub use writer::{RasterWriter, Sample, WriterSpec};

use crate::error::Error;
use std::path::Path;

/// The most bytes one decoded row of a strip or tile may hold (256 MiB); a larger one is refused at open.
pub const MAX_ROW_BYTES: u64 = 256 << 20;

/// The most samples (bands x rows x columns) one window may hold (2^30, 4 GiB of f32).
pub const MAX_WINDOW_SAMPLES: u64 = 1 << 30;

/// The most bytes a whole scene may decode to (2^50, 1 PiB): a header claiming more is refused.
pub const MAX_SCENE_BYTES: u64 = 1 << 50;

/// The default capacity of a [`Raster`]'s cache of decoded strips or tiles (64 MiB).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The type of one sample (one band of one pixel) as stored in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleType {
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 32-bit integer.
    I32,
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
}

impl SampleType {
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            SampleType::U8 | SampleType::I8 => 1,
            SampleType::U16 | SampleType::I16 => 2,
            SampleType::U32 | SampleType::I32 | SampleType::F32 => 4,
            SampleType::F64 => 8,
        }
    }

    /// The short name used in messages: `u8`, `i16`, `f32`, ...
    pub fn name(self) -> &'static str {
        match self {
            SampleType::U8 => "u8",
            SampleType::I8 => "i8",
            SampleType::U16 => "u16",
            SampleType::I16 => "i16",
            SampleType::U32 => "u32",
            SampleType::I32 => "i32",
            SampleType::F32 => "f32",
            SampleType::F64 => "f64",
        }
    }

    /// TIFF's SampleFormat (tag 339) value: 1 unsigned integer, 2 signed integer, 3 IEEE float.
    pub(crate) fn tiff_sample_format(self) -> u16 {
        match self {
            SampleType::U8 | SampleType::U16 | SampleType::U32 => 1,
            SampleType::I8 | SampleType::I16 | SampleType::I32 => 2,
            SampleType::F32 | SampleType::F64 => 3,
        }
    }

    /// The type for TIFF's SampleFormat and BitsPerSample, if atrous reads it.
    pub(crate) fn from_tiff(sample_format: u16, bits: u16) -> Option<SampleType> {
        Some(match (sample_format, bits) {
            (1, 8) => SampleType::U8,
            (2, 8) => SampleType::I8,
            (1, 16) => SampleType::U16,
            (2, 16) => SampleType::I16,
            (1, 32) => SampleType::U32,
            (2, 32) => SampleType::I32,
            (3, 32) => SampleType::F32,
            (3, 64) => SampleType::F64,
            _ => return None,
        })
    }
}

impl std::fmt::Display for SampleType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) fn file_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}
