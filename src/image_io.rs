//! Images in and out: decoding any supported photo to 8-bit RGBA, and writing class maps as PNG (the mask itself,
//! its palette colours, and the photo blended with them). Every file is written under a temporary name in its
//! directory and renamed into place once complete, so a failed write (a full disk, an I/O error, a crash) never leaves
//! a truncated file under the final name.

use crate::error::{Error, Result};
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage, RgbaImage};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};

/// File extensions `atrous segment` treats as images when walking a directory.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "webp"];

fn file_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Decodes PNG, JPEG, TIFF or WebP (grey, RGB, RGBA, 8 or 16 bits) into 8-bit RGBA. A truncated or corrupt file is
/// an error naming it, including a JPEG cut short, which the decoder would otherwise pad silently.
pub fn load_image(path: &Path) -> Result<RgbaImage> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let reader = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| file_error(path, e))?;
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(&bytes) {
        return Err(file_error(
            path,
            "cannot decode image: truncated JPEG (the data ends before the end-of-image marker)",
        ));
    }
    let image = reader
        .decode()
        .map_err(|e| file_error(path, format!("cannot decode image: {e}")))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(file_error(path, "image has zero size"));
    }
    Ok(image.to_rgba8())
}

/// Whether a JPEG's markers run through to its end-of-image marker (EOI). The segments are walked by their lengths
/// (so an EXIF thumbnail's markers are skipped) and each scan's entropy-coded data up to the next marker (a 0xFF
/// there is stuffed as FF 00, and restart markers belong to the scan). Data that is not a JPEG counts as complete,
/// left to the decoder to judge.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return true;
    }
    let mut i = 2;
    loop {
        // A marker, after any fill bytes (0xFF).
        if i >= bytes.len() || bytes[i] != 0xFF {
            return i < bytes.len();
        }
        while i + 1 < bytes.len() && bytes[i + 1] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i + 1) else {
            return false;
        };
        i += 2;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(length) = bytes.get(i..i + 2) else {
            return false;
        };
        let length = u16::from_be_bytes([length[0], length[1]]) as usize;
        if length < 2 || i + length > bytes.len() {
            return false;
        }
        i += length;
        if marker == 0xDA {
            // Entropy-coded data up to the next marker that is neither a stuffed 0xFF nor a restart.
            loop {
                let Some(offset) = bytes[i..].iter().position(|&b| b == 0xFF) else {
                    return false;
                };
                let at = i + offset;
                match bytes.get(at + 1) {
                    None => return false,
                    Some(0x00 | 0xD0..=0xD7) => i = at + 2,
                    Some(0xFF) => i = at + 1,
                    Some(_) => {
                        i = at;
                        break;
                    }
                }
            }
        }
    }
}

/// A file written under a temporary name (`.<name>.tmp-<pid>`, in the same directory) and not yet renamed into
/// place: [`StagedFile::commit`] renames it; dropping it uncommitted removes the temporary file.
#[derive(Debug)]
pub struct StagedFile {
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl StagedFile {
    /// Writes `path`'s temporary file through `write`, flushed and synced to disk. On any error the temporary file
    /// is removed and `path` is untouched.
    pub fn write(
        path: &Path,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<Self> {
        Self::write_with(path, |temp, file| {
            let mut writer = BufWriter::new(file);
            write(&mut writer)
                .and_then(|()| writer.flush())
                .map_err(|e| file_error(temp, e))
        })
    }

    /// Like [`StagedFile::write`] for a writer that takes a path (such as `Weights::save`): `write` gets the
    /// temporary file's path, and the file already created there.
    pub fn write_to_path(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<Self> {
        Self::write_with(path, |temp, _| write(temp))
    }

    /// Creates `path`'s temporary file for a writer that fills it piece by piece (such as
    /// [`RasterWriter`](crate::raster::RasterWriter)): the file comes back open for writing, and the `StagedFile`
    /// removes it when dropped uncommitted. The caller flushes and syncs what it writes before committing.
    pub fn create(path: &Path) -> Result<(Self, File)> {
        let name = path
            .file_name()
            .ok_or_else(|| file_error(path, "not a file name"))?;
        let temp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        // create_new: never follows or reuses whatever is at the temporary name. One already there carries this
        // process's id, so it is a leftover of an earlier process killed mid-write: removed and tried once more.
        let create = || OpenOptions::new().write(true).create_new(true).open(&temp);
        let file = create()
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    std::fs::remove_file(&temp)?;
                    create()
                }
                _ => Err(e),
            })
            .map_err(|e| file_error(path, format!("cannot write: {e}")))?;
        let staged = StagedFile {
            temp,
            path: path.to_path_buf(),
            committed: false,
        };
        Ok((staged, file))
    }

    fn write_with(path: &Path, write: impl FnOnce(&Path, &mut File) -> Result<()>) -> Result<Self> {
        let (staged, mut file) = Self::create(path)?;
        let message = |e: Error| match e {
            Error::File { message, .. } => file_error(path, format!("cannot write: {message}")),
            e => e,
        };
        let written = write(&staged.temp, &mut file);
        drop(file);
        written.map_err(message)?;
        // A path-based writer may have replaced the file: sync what is there now.
        OpenOptions::new()
            .write(true)
            .open(&staged.temp)
            .and_then(|f| f.sync_all())
            .map_err(|e| file_error(path, format!("cannot write: {e}")))?;
        Ok(staged)
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the temporary file to the final path (replacing any file there).
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.temp, &self.path)
            .map_err(|e| file_error(&self.path, format!("cannot write: {e}")))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Renames staged files into place, all or none as far as can be checked first: where one of the paths is taken by a
/// directory, none is renamed (and every temporary file is removed).
pub fn commit_all(files: Vec<StagedFile>) -> Result<()> {
    if let Some(taken) = files.iter().find(|f| f.path.is_dir()) {
        return Err(file_error(&taken.path, "cannot write: is a directory"));
    }
    files.into_iter().try_for_each(StagedFile::commit)
}

/// Writes `path` through a temporary file renamed into place once complete ([`StagedFile`]): after an error there
/// is neither a partial file at `path` (any earlier file there is kept) nor a temporary one.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    StagedFile::write(path, write)?.commit()
}

/// Encodes `image` as a PNG staged at `path` (see [`StagedFile`]).
pub fn stage_png(path: &Path, image: &DynamicImage) -> Result<StagedFile> {
    StagedFile::write(path, |w| {
        image
            .write_with_encoder(PngEncoder::new(w))
            .map_err(std::io::Error::other)
    })
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

/// The class index per pixel: 8-bit grey for up to 256 classes, 16-bit otherwise.
pub fn mask_image(width: u32, height: u32, classes: &[u32], class_count: usize) -> DynamicImage {
    if class_count <= 256 {
        let data = classes.iter().map(|&c| c as u8).collect();
        let image: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_raw(width, height, data).expect("mask size");
        image.into()
    } else {
        let data = classes
            .iter()
            .map(|&c| c.min(u16::MAX as u32) as u16)
            .collect();
        let image: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_raw(width, height, data).expect("mask size");
        image.into()
    }
}

fn colour(palette: &[[u8; 3]], class: u32) -> [u8; 3] {
    palette
        .get(class as usize)
        .copied()
        .unwrap_or([255, 255, 255])
}

/// Each pixel in its class's palette colour.
pub fn color_image(width: u32, height: u32, classes: &[u32], palette: &[[u8; 3]]) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb(colour(palette, classes[(y * width + x) as usize]))
    })
}

/// The photo with every non-background pixel (class != 0) blended half-and-half with its class colour.
pub fn overlay_image(photo: &RgbaImage, classes: &[u32], palette: &[[u8; 3]]) -> RgbImage {
    let width = photo.width();
    RgbImage::from_fn(width, photo.height(), |x, y| {
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
    })
}

/// Writes [`mask_image`] as a PNG (through a temporary file).
pub fn write_mask(
    path: &Path,
    width: u32,
    height: u32,
    classes: &[u32],
    class_count: usize,
) -> Result<()> {
    stage_png(path, &mask_image(width, height, classes, class_count))?.commit()
}

/// Writes [`color_image`] as a PNG (through a temporary file).
pub fn write_color(
    path: &Path,
    width: u32,
    height: u32,
    classes: &[u32],
    palette: &[[u8; 3]],
) -> Result<()> {
    stage_png(path, &color_image(width, height, classes, palette).into())?.commit()
}

/// Writes [`overlay_image`] as a PNG (through a temporary file).
pub fn write_overlay(
    path: &Path,
    photo: &RgbaImage,
    classes: &[u32],
    palette: &[[u8; 3]],
) -> Result<()> {
    stage_png(path, &overlay_image(photo, classes, palette).into())?.commit()
}
