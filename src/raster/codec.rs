//! Decompression of one strip or tile as a stream of rows (so that a chunk never has to be held whole), and the
//! per-row undoing of TIFF's predictors and byte order.

use std::io::{self, BufRead, BufReader, Read};

/// The compressions atrous reads (TIFF tag 259).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Lzw,
    Deflate,
    PackBits,
}

impl Compression {
    /// The compression for TIFF's code, or a message naming the unsupported one.
    pub fn from_tiff(code: u16) -> Result<Compression, String> {
        Ok(match code {
            1 => Compression::None,
            5 => Compression::Lzw,
            8 | 32946 => Compression::Deflate,
            32773 => Compression::PackBits,
            _ => {
                let name = match code {
                    2..=4 => "CCITT fax",
                    6 | 7 => "JPEG",
                    34712 => "JPEG 2000",
                    34887 => "LERC",
                    34925 => "LZMA",
                    50000 => "ZSTD",
                    50001 => "WebP",
                    50002 => "JPEG XL",
                    _ => "unknown",
                };
                return Err(format!(
                    "{name} compression (TIFF compression {code}) is not supported (only none, LZW, deflate and \
                     PackBits); convert it, e.g. gdal_translate -co COMPRESS=DEFLATE -co TILED=YES"
                ));
            }
        })
    }
}

/// A reader of the decompressed bytes of one chunk, given a reader of its compressed bytes (already limited to
/// the chunk's byte count).
pub(crate) fn decompressor<'a, R: Read + 'a>(
    compression: Compression,
    input: R,
) -> Box<dyn Read + 'a> {
    match compression {
        Compression::None => Box::new(input),
        Compression::Deflate => Box::new(flate2::read::ZlibDecoder::new(input)),
        Compression::Lzw => Box::new(LzwReader {
            input: BufReader::with_capacity(32 << 10, input),
            decoder: weezl::decode::Configuration::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
                .with_yield_on_full_buffer(true)
                .build(),
        }),
        Compression::PackBits => Box::new(PackBitsReader {
            input: BufReader::with_capacity(32 << 10, input),
            literal: 0,
            repeat: 0,
            value: 0,
        }),
    }
}

/// TIFF's LZW (MSB first, code size switching one code early) as a `Read`.
struct LzwReader<R> {
    input: BufReader<R>,
    decoder: weezl::decode::Decoder,
}

impl<R: Read> Read for LzwReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let result = self.decoder.decode_bytes(self.input.fill_buf()?, buf);
            self.input.consume(result.consumed_in);
            match result.status {
                Ok(weezl::LzwStatus::Ok) if result.consumed_out == 0 => continue,
                Ok(weezl::LzwStatus::Ok) | Ok(weezl::LzwStatus::Done) => {
                    return Ok(result.consumed_out)
                }
                Ok(weezl::LzwStatus::NoProgress) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "LZW data ends without an end code",
                    ))
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("LZW: {e}"),
                    ))
                }
            }
        }
    }
}

/// Apple's PackBits as a `Read`: a header byte n, then n + 1 literal bytes (n in 0..=127) or one byte repeated
/// 1 - n times (n in -127..=-1); -128 is skipped.
struct PackBitsReader<R> {
    input: BufReader<R>,
    /// Literal bytes left in the current run.
    literal: usize,
    /// Repeats of `value` left in the current run.
    repeat: usize,
    value: u8,
}

impl<R: Read> PackBitsReader<R> {
    fn byte(&mut self) -> io::Result<Option<u8>> {
        let buf = self.input.fill_buf()?;
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        self.input.consume(1);
        Ok(Some(b))
    }
}

impl<R: Read> Read for PackBitsReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.repeat > 0 {
                let k = self.repeat.min(buf.len() - n);
                buf[n..n + k].fill(self.value);
                self.repeat -= k;
                n += k;
            } else if self.literal > 0 {
                let k = self.literal.min(buf.len() - n);
                let got = self.input.read(&mut buf[n..n + k])?;
                if got == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.literal -= got;
                n += got;
            } else {
                let Some(header) = self.byte()? else {
                    break;
                };
                match header as i8 {
                    -128 => {}
                    h @ 0..=127 => self.literal = h as usize + 1,
                    h => {
                        self.value = self.byte()?.ok_or(io::ErrorKind::UnexpectedEof)?;
                        self.repeat = (1 - h as isize) as usize;
                    }
                }
            }
        }
        Ok(n)
    }
}

/// How a decompressed row's bytes become native-endian samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowFormat {
    /// Bytes per sample: 1, 2, 4 or 8.
    pub sample_bytes: usize,
    /// Samples per pixel within the chunk (the bands for pixel-interleaved files, 1 for planar ones).
    pub samples_per_pixel: usize,
    /// TIFF predictor (tag 317): 1 none, 2 horizontal differencing, 3 floating point.
    pub predictor: u16,
    /// Whether the file is big-endian (`MM`).
    pub big_endian: bool,
}

impl RowFormat {
    /// Turns one decompressed row (in the file's byte order, predictor applied) into native-endian samples.
    /// `scratch` is reused between rows by the floating-point predictor.
    pub fn finish_row(&self, row: &mut [u8], scratch: &mut Vec<u8>) {
        let n = self.sample_bytes;
        let stride = self.samples_per_pixel;
        if self.predictor == 3 {
            // Floating point predictor (Adobe TN 3): the row holds the samples' bytes as byte planes, most
            // significant first, each plane differenced byte by byte with a lag of one pixel.
            let lag = stride;
            for i in lag..row.len() {
                row[i] = row[i].wrapping_add(row[i - lag]);
            }
            let count = row.len() / n;
            scratch.clear();
            scratch.extend_from_slice(row);
            for i in 0..count {
                let mut be = [0u8; 8];
                for (b, byte) in be[..n].iter_mut().enumerate() {
                    *byte = scratch[b * count + i];
                }
                let out = &mut row[i * n..(i + 1) * n];
                out.copy_from_slice(&be[..n]);
                if cfg!(target_endian = "little") {
                    out.reverse();
                }
            }
            return;
        }
        if n > 1 && self.big_endian != cfg!(target_endian = "big") {
            for sample in row.chunks_exact_mut(n) {
                sample.reverse();
            }
        }
        if self.predictor == 2 {
            match n {
                1 => {
                    for i in stride..row.len() {
                        row[i] = row[i].wrapping_add(row[i - stride]);
                    }
                }
                2 => accumulate::<2>(row, stride, |a, b| {
                    (u16::from_ne_bytes(a).wrapping_add(u16::from_ne_bytes(b))).to_ne_bytes()
                }),
                4 => accumulate::<4>(row, stride, |a, b| {
                    (u32::from_ne_bytes(a).wrapping_add(u32::from_ne_bytes(b))).to_ne_bytes()
                }),
                _ => accumulate::<8>(row, stride, |a, b| {
                    (u64::from_ne_bytes(a).wrapping_add(u64::from_ne_bytes(b))).to_ne_bytes()
                }),
            }
        }
    }
}

/// Horizontal differencing undone on `N`-byte samples: each sample plus the one `stride` samples before it.
fn accumulate<const N: usize>(
    row: &mut [u8],
    stride: usize,
    add: impl Fn([u8; N], [u8; N]) -> [u8; N],
) {
    let count = row.len() / N;
    for i in stride..count {
        let prev: [u8; N] = row[(i - stride) * N..(i - stride + 1) * N]
            .try_into()
            .unwrap();
        let cur: [u8; N] = row[i * N..(i + 1) * N].try_into().unwrap();
        row[i * N..(i + 1) * N].copy_from_slice(&add(cur, prev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_decodes_the_apple_example() {
        // From Apple's TN1023.
        let packed = [
            0xFE, 0xAA, 0x02, 0x80, 0x00, 0x2A, 0xFD, 0xAA, 0x03, 0x80, 0x00, 0x2A, 0x22, 0xF7,
            0xAA,
        ];
        let mut out = Vec::new();
        decompressor(Compression::PackBits, &packed[..])
            .read_to_end(&mut out)
            .unwrap();
        let expected = [
            0xAA, 0xAA, 0xAA, 0x80, 0x00, 0x2A, 0xAA, 0xAA, 0xAA, 0xAA, 0x80, 0x00, 0x2A, 0x22,
            0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn horizontal_predictor_is_undone_per_band() {
        let format = RowFormat {
            sample_bytes: 2,
            samples_per_pixel: 2,
            predictor: 2,
            big_endian: cfg!(target_endian = "big"),
        };
        let mut row: Vec<u8> = [10u16, 20, 1, 2, 65535, 3]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        format.finish_row(&mut row, &mut Vec::new());
        let values: Vec<u16> = row
            .chunks_exact(2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(values, [10, 20, 11, 22, 10, 25]);
    }

    #[test]
    fn floating_point_predictor_is_undone() {
        // Encode [1.5, -2.25, 3.0] (one band) as TN 3 does: byte planes, most significant first, differenced.
        let values = [1.5f32, -2.25, 3.0];
        let count = values.len();
        let mut planes = vec![0u8; count * 4];
        for (i, v) in values.iter().enumerate() {
            for (b, byte) in v.to_be_bytes().iter().enumerate() {
                planes[b * count + i] = *byte;
            }
        }
        for i in (1..planes.len()).rev() {
            planes[i] = planes[i].wrapping_sub(planes[i - 1]);
        }
        let format = RowFormat {
            sample_bytes: 4,
            samples_per_pixel: 1,
            predictor: 3,
            big_endian: false,
        };
        format.finish_row(&mut planes, &mut Vec::new());
        let decoded: Vec<f32> = planes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, values);
    }
}
