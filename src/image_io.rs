//! Images in and out: decoding any supported photo to 8-bit RGBA, and writing class maps as PNG (the mask itself,
//! its palette colours, and the photo blended with them).

use crate::error::{Error, Result};
use image::{ImageBuffer, Luma, Rgb, RgbImage, RgbaImage};
use std::path::Path;

/// File extensions `atrous segment` treats as images when walking a directory.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "webp"];

fn file_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Decodes PNG, JPEG, TIFF or WebP (grey, RGB, RGBA, 8 or 16 bits) into 8-bit RGBA.
pub fn load_image(path: &Path) -> Result<RgbaImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| file_error(path, e))?
        .with_guessed_format()
        .map_err(|e| file_error(path, e))?;
    let image = reader
        .decode()
        .map_err(|e| file_error(path, format!("cannot decode image: {e}")))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(file_error(path, "image has zero size"));
    }
    Ok(image.to_rgba8())
}

/// PASCAL VOC's colour map (class 0 black), which extends to any number of classes.
pub fn default_palette(classes: usize) -> Vec<[u8; 3]> {
    (0..classes)
        .map(|class| {
            let mut rgb = [0u8; 3];
            let mut c = class;
            for bit in (0..8).rev() {
                for (channel, value) in rgb.iter_mut().enumerate() {
                    *value |= (((c >> channel) & 1) as u8) << bit;
                }
                c >>= 3;
            }
            rgb
        })
        .collect()
}

fn save(path: &Path, result: image::ImageResult<()>) -> Result<()> {
    result.map_err(|e| file_error(path, format!("cannot write: {e}")))
}

/// The class index per pixel: 8-bit grey for up to 256 classes, 16-bit otherwise.
pub fn write_mask(
    path: &Path,
    width: u32,
    height: u32,
    classes: &[u32],
    class_count: usize,
) -> Result<()> {
    if class_count <= 256 {
        let data = classes.iter().map(|&c| c as u8).collect();
        let image: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_raw(width, height, data).expect("mask size");
        save(path, image.save(path))
    } else {
        let data = classes
            .iter()
            .map(|&c| c.min(u16::MAX as u32) as u16)
            .collect();
        let image: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_raw(width, height, data).expect("mask size");
        save(path, image.save(path))
    }
}

fn colour(palette: &[[u8; 3]], class: u32) -> [u8; 3] {
    palette
        .get(class as usize)
        .copied()
        .unwrap_or([255, 255, 255])
}

/// Each pixel in its class's palette colour.
pub fn write_color(
    path: &Path,
    width: u32,
    height: u32,
    classes: &[u32],
    palette: &[[u8; 3]],
) -> Result<()> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        Rgb(colour(palette, classes[(y * width + x) as usize]))
    });
    save(path, image.save(path))
}

/// The photo with every non-background pixel (class != 0) blended half-and-half with its class colour.
pub fn write_overlay(
    path: &Path,
    photo: &RgbaImage,
    classes: &[u32],
    palette: &[[u8; 3]],
) -> Result<()> {
    let width = photo.width();
    let image = RgbImage::from_fn(width, photo.height(), |x, y| {
        let p = photo.get_pixel(x, y).0;
        match classes[(y * width + x) as usize] {
            0 => Rgb([p[0], p[1], p[2]]),
            class => {
                let c = colour(palette, class);
                Rgb(std::array::from_fn(|i| {
                    ((p[i] as u16 + c[i] as u16) / 2) as u8
                }))
            }
        }
    });
    save(path, image.save(path))
}
