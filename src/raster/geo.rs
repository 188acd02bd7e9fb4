//! The GeoTIFF georeferencing tags, kept as they are in the file so that a writer can copy them unchanged.

use std::io::{Read, Seek};
use tiff::decoder::Decoder;
use tiff::tags::Tag;

/// TIFF tag numbers of the GeoTIFF georeferencing tags and GDAL's nodata tag.
pub(crate) mod tags {
    /// ModelPixelScale: 3 doubles (x, y, z size of a pixel in model units).
    pub const MODEL_PIXEL_SCALE: u16 = 33550;
    /// ModelTiepoint: 6 doubles per tie point (raster I, J, K; model X, Y, Z).
    pub const MODEL_TIEPOINT: u16 = 33922;
    /// ModelTransformation: 16 doubles, a row-major 4 x 4 matrix from raster to model space.
    pub const MODEL_TRANSFORMATION: u16 = 34264;
    /// GeoKeyDirectory: shorts, the header and the keys (CRS and friends).
    pub const GEO_KEY_DIRECTORY: u16 = 34735;
    /// GeoDoubleParams: doubles the keys refer to.
    pub const GEO_DOUBLE_PARAMS: u16 = 34736;
    /// GeoAsciiParams: text the keys refer to, `|`-separated.
    pub const GEO_ASCII_PARAMS: u16 = 34737;
    /// GDAL_NODATA: the nodata value as ASCII text.
    pub const GDAL_NODATA: u16 = 42113;
}

/// The georeferencing tags of a GeoTIFF (each `None` where the file has no such tag), read as they are so that a
/// [`RasterWriter`](super::RasterWriter) of the same pixel grid can copy them: CRS, geotransform and everything
/// else the GeoKeys say carry over unchanged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GeoTags {
    /// ModelPixelScale (tag 33550).
    pub model_pixel_scale: Option<Vec<f64>>,
    /// ModelTiepoint (tag 33922).
    pub model_tiepoint: Option<Vec<f64>>,
    /// ModelTransformation (tag 34264).
    pub model_transformation: Option<Vec<f64>>,
    /// GeoKeyDirectory (tag 34735).
    pub geo_key_directory: Option<Vec<u16>>,
    /// GeoDoubleParams (tag 34736).
    pub geo_double_params: Option<Vec<f64>>,
    /// GeoAsciiParams (tag 34737), without its terminating NUL.
    pub geo_ascii_params: Option<String>,
}

/// GeoKey ids used by [`GeoTags`]' helpers.
const GT_RASTER_TYPE: u16 = 1025;
const GEOGRAPHIC_TYPE: u16 = 2048;
const PROJECTED_CS_TYPE: u16 = 3072;
/// GeoKey value meaning "user-defined" (no EPSG code).
const USER_DEFINED: u16 = 32767;

impl GeoTags {
    /// Whether the file carries no georeferencing at all.
    pub fn is_empty(&self) -> bool {
        *self == GeoTags::default()
    }

    /// The value of a GeoKey stored inline in the GeoKeyDirectory (a SHORT key), if present.
    pub fn geo_key(&self, id: u16) -> Option<u16> {
        let dir = self.geo_key_directory.as_ref()?;
        let count = usize::from(*dir.get(3)?);
        dir.get(4..)?
            .chunks_exact(4)
            .take(count)
            .find(|key| key[0] == id && key[1] == 0)
            .map(|key| key[3])
    }

    /// The EPSG code of the CRS: the projected CRS key (3072), else the geographic one (2048); `None` when neither
    /// is present or the CRS is user-defined.
    pub fn epsg(&self) -> Option<u16> {
        [PROJECTED_CS_TYPE, GEOGRAPHIC_TYPE]
            .into_iter()
            .filter_map(|id| self.geo_key(id))
            .find(|&code| code != 0 && code != USER_DEFINED)
    }

    /// The affine geotransform as GDAL states it, `[x0, dx/dcol, dx/drow, y0, dy/dcol, dy/drow]` for the top left
    /// corner of the top left pixel: from ModelTransformation, else from the first tie point and the pixel scale.
    /// Where the raster type GeoKey says PixelIsPoint, shifted by half a pixel as GDAL does. `None` without
    /// georeferencing.
    pub fn geotransform(&self) -> Option<[f64; 6]> {
        let mut gt = if let Some(m) = self
            .model_transformation
            .as_deref()
            .filter(|m| m.len() >= 16)
        {
            [m[3], m[0], m[1], m[7], m[4], m[5]]
        } else {
            let tie = self.model_tiepoint.as_deref().filter(|t| t.len() >= 6)?;
            let scale = self.model_pixel_scale.as_deref().filter(|s| s.len() >= 2)?;
            [
                tie[3] - tie[0] * scale[0],
                scale[0],
                0.0,
                tie[4] + tie[1] * scale[1],
                0.0,
                -scale[1],
            ]
        };
        if self.geo_key(GT_RASTER_TYPE) == Some(2) {
            gt[0] -= 0.5 * (gt[1] + gt[2]);
            gt[3] -= 0.5 * (gt[4] + gt[5]);
        }
        Some(gt)
    }

    /// Reads the tags from the current image of `decoder`.
    pub(crate) fn read<R: Read + Seek>(decoder: &mut Decoder<R>) -> tiff::TiffResult<GeoTags> {
        let doubles = |d: &mut Decoder<R>, tag: u16| -> tiff::TiffResult<Option<Vec<f64>>> {
            d.find_tag(Tag::from_u16_exhaustive(tag))?
                .map(|v| v.into_f64_vec())
                .transpose()
        };
        Ok(GeoTags {
            model_pixel_scale: doubles(decoder, tags::MODEL_PIXEL_SCALE)?,
            model_tiepoint: doubles(decoder, tags::MODEL_TIEPOINT)?,
            model_transformation: doubles(decoder, tags::MODEL_TRANSFORMATION)?,
            geo_key_directory: decoder
                .find_tag(Tag::from_u16_exhaustive(tags::GEO_KEY_DIRECTORY))?
                .map(|v| v.into_u16_vec())
                .transpose()?,
            geo_double_params: doubles(decoder, tags::GEO_DOUBLE_PARAMS)?,
            geo_ascii_params: decoder
                .find_tag(Tag::from_u16_exhaustive(tags::GEO_ASCII_PARAMS))?
                .map(|v| v.into_string())
                .transpose()?,
        })
    }
}
