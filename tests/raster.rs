//! The raster layer: windowed GeoTIFF reading (every layout, compression and sample type against the formula the
//! fixtures were written with), tiled GeoTIFF writing (read back by atrous and by GDAL's gdalinfo), bounded
//! memory by construction, and bad files refused with errors naming them.
//!
//! The fixtures in tests/fixtures/raster/ were written by tools/make_scene.py (rasterio 1.4.4, GDAL 3.x), whose
//! pixel values follow the formula mirrored in `expected` below. From that folder:
//!
//! ```sh
//! M="python3 ../../../tools/make_scene.py"
//! $M u16_tiled_deflate.tif --compress deflate
//! $M u16_tiled_lzw_pred2.tif --compress lzw --predictor 2
//! $M u16_tiled_none.tif --compress none
//! $M u16_tiled_planar_lzw.tif --compress lzw --interleave band
//! $M u16_tiled_bigtiff.tif --compress deflate --bigtiff
//! $M u16_tiled_bigendian.tif --compress deflate --predictor 2 --endian big
//! $M u16_stripped_deflate.tif --layout stripped --block 7 --compress deflate
//! $M u16_stripped_lzw.tif --layout stripped --block 7 --compress lzw
//! $M u16_stripped_none.tif --layout stripped --block 50 --compress none
//! $M u16_stripped_packbits.tif --layout stripped --block 3 --compress packbits
//! $M u16_nodata.tif --nodata 0
//! for t in uint8 int8 int16 uint32 int32; do $M $t.tif --bands 3 --dtype $t; done
//! $M float32.tif --bands 3 --dtype float32 --predictor 3 --nodata -9999
//! $M float64.tif --bands 3 --dtype float64 --predictor 3 --interleave band --endian big
//! $M bits1.tif --bands 1 --dtype uint8 --nbits 1
//! $M complex.tif --bands 1 --dtype complex64
//! $M palette.tif --bands 1 --dtype uint8 --palette
//! ```
//!
//! Every fixture is 70 x 50 pixels (tiles of 16, or strips of the rows given), EPSG:32633, 10 m pixels, top left
//! corner (500000, 5000000).
//!
//! The GDAL checks run `gdalinfo` (Debian: gdal-bin). Where it is missing they print a note and skip, unless `CI`
//! is set (`.ci/run` installs it), where a missing gdalinfo fails.

use atrous::raster::{GeoTags, Raster, RasterWriter, SampleType, Window, WriterSpec};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;

const W: i64 = 70;
const H: i64 = 50;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/raster")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atrous-raster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn hash(x: i64, y: i64) -> i64 {
    (x * 73856093) ^ (y * 19349663)
}

/// tools/make_scene.py's formula: the value of band `b` at (x, y) for the fixture's type.
fn formula(t: SampleType, b: i64, y: i64, x: i64) -> f64 {
    let raw = (1000 * b + 3 * x + 5 * y + (hash(x, y) ^ (b * 83492791)) % 61) % 65536;
    match t {
        SampleType::U8 => (raw % 251) as f64,
        SampleType::I8 => (raw % 251 - 125) as f64,
        SampleType::U16 => raw as f64,
        SampleType::I16 => (raw - 32768) as f64,
        SampleType::U32 => (raw * 65537) as f64,
        SampleType::I32 => ((raw - 32768) * 65536) as f64,
        SampleType::F32 => (raw - 30000) as f64 / 4.0,
        SampleType::F64 => (raw - 30000) as f64 / 8.0,
    }
}

/// The stored value: the formula, or the nodata value in the script's holes.
fn stored(t: SampleType, nodata: Option<f64>, b: i64, y: i64, x: i64) -> f64 {
    match nodata {
        Some(v) if x < 2 || hash(x, y) % 13 == 0 => v,
        _ => formula(t, b, y, x),
    }
}

/// Checks every value and validity flag of `window` (of `bands` of a fixture) against the formula.
fn check_window(
    window: &Window,
    bands: &[usize],
    t: SampleType,
    file_nodata: Option<f64>,
    nodata: Option<f64>,
) {
    let fill = nodata.map_or(0.0, |v| v as f32);
    for row in 0..window.height {
        for col in 0..window.width {
            let (x, y) = (window.x + col as i64, window.y + row as i64);
            let inside = (0..W).contains(&x) && (0..H).contains(&y);
            let mut valid = inside;
            for (i, &b) in bands.iter().enumerate() {
                let got = window.band(i)[row * window.width + col];
                if inside {
                    let v = stored(t, file_nodata, b as i64, y, x);
                    assert_eq!(got, v as f32, "band {b} at ({x}, {y})");
                    if Some(v) == nodata {
                        valid = false;
                    }
                } else {
                    assert_eq!(got, fill, "band {b} at ({x}, {y}) outside the scene");
                }
            }
            assert_eq!(window.is_valid(row, col), valid, "validity at ({x}, {y})");
        }
    }
}

const U16_FIXTURES: &[&str] = &[
    "u16_tiled_deflate.tif",
    "u16_tiled_lzw_pred2.tif",
    "u16_tiled_none.tif",
    "u16_tiled_planar_lzw.tif",
    "u16_tiled_bigtiff.tif",
    "u16_tiled_bigendian.tif",
    "u16_stripped_deflate.tif",
    "u16_stripped_lzw.tif",
    "u16_stripped_none.tif",
    "u16_stripped_packbits.tif",
];

#[test]
fn every_layout_and_compression_should_read_the_formulas_values() {
    let all = [0, 1, 2, 3];
    for name in U16_FIXTURES {
        let mut r = Raster::open(fixture(name)).unwrap();
        assert_eq!((r.width(), r.height(), r.bands()), (70, 50, 4), "{name}");
        assert_eq!(r.sample_type(), SampleType::U16, "{name}");
        assert_eq!(r.nodata(), None, "{name}");
        assert_eq!(r.is_tiled(), name.contains("tiled"), "{name}");
        assert_eq!(r.geo().epsg(), Some(32633), "{name}");
        assert_eq!(
            r.geo().geotransform(),
            Some([500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0]),
            "{name}"
        );
        let whole = r.read_window(0, 0, 70, 50, &all).unwrap();
        assert_eq!(whole.valid_count(), 70 * 50);
        check_window(&whole, &all, SampleType::U16, None, None);
        // Windows straddling strip and tile boundaries.
        for (x, y, w, h) in [
            (13, 9, 30, 25),
            (15, 15, 2, 2),
            (16, 16, 16, 16),
            (69, 49, 1, 1),
            (1, 3, 68, 1),
        ] {
            let window = r.read_window(x, y, w, h, &all).unwrap();
            check_window(&window, &all, SampleType::U16, None, None);
        }
    }
}

#[test]
fn bands_should_come_in_the_order_asked_for() {
    for name in [
        "u16_tiled_deflate.tif",
        "u16_tiled_planar_lzw.tif",
        "u16_stripped_lzw.tif",
    ] {
        let mut r = Raster::open(fixture(name)).unwrap();
        for bands in [&[3usize, 0, 0][..], &[2], &[1, 3]] {
            let window = r.read_window(5, 7, 40, 30, bands).unwrap();
            assert_eq!(window.bands, bands.len());
            assert_eq!(window.data.len(), bands.len() * 40 * 30);
            check_window(&window, bands, SampleType::U16, None, None);
        }
    }
}

#[test]
fn windows_past_the_edges_should_be_invalid_there() {
    let mut r = Raster::open(fixture("u16_tiled_deflate.tif")).unwrap();
    let bands = [0, 2];
    for (x, y, w, h) in [
        (-5, -7, 20, 20),
        (60, 45, 20, 20),
        (-3, -3, 76, 56),
        (-100, -100, 10, 10),
        (70, 0, 5, 5),
        (0, 50, 5, 5),
    ] {
        let window = r.read_window(x, y, w, h, &bands).unwrap();
        check_window(&window, &bands, SampleType::U16, None, None);
    }
    let inside = r.read_window(-3, -3, 76, 56, &bands).unwrap();
    assert_eq!(inside.valid_count(), 70 * 50);
    assert_eq!(
        r.read_window(-100, -100, 10, 10, &bands)
            .unwrap()
            .valid_count(),
        0
    );
}

#[test]
fn nodata_pixels_should_be_invalid() {
    let mut r = Raster::open(fixture("u16_nodata.tif")).unwrap();
    assert_eq!(r.nodata(), Some(0.0));
    assert_eq!(r.file_nodata(), Some(0.0));
    let bands = [0, 1, 2, 3];
    let window = r.read_window(-2, -2, 74, 54, &bands).unwrap();
    check_window(&window, &bands, SampleType::U16, Some(0.0), Some(0.0));
    let holes = (0..H)
        .flat_map(|y| (0..W).map(move |x| (x, y)))
        .filter(|&(x, y)| x < 2 || hash(x, y) % 13 == 0)
        .count();
    assert!(holes > 100);
    assert_eq!(window.valid_count(), (W * H) as usize - holes);

    // The caller's nodata replaces the file's: none at all, or another value.
    r.set_nodata(None);
    let window = r.read_window(0, 0, 70, 50, &bands).unwrap();
    check_window(&window, &bands, SampleType::U16, Some(0.0), None);
    assert_eq!(window.valid_count(), 70 * 50);
    let v = formula(SampleType::U16, 1, 10, 20);
    r.set_nodata(Some(v));
    let window = r.read_window(0, 0, 70, 50, &[1]).unwrap();
    check_window(&window, &[1], SampleType::U16, Some(0.0), Some(v));
    assert!(!window.is_valid(10, 20));
    assert_eq!(r.file_nodata(), Some(0.0));
}

#[test]
fn every_sample_type_should_read_its_values() {
    for (name, t, nodata) in [
        ("uint8.tif", SampleType::U8, None),
        ("int8.tif", SampleType::I8, None),
        ("int16.tif", SampleType::I16, None),
        ("uint32.tif", SampleType::U32, None),
        ("int32.tif", SampleType::I32, None),
        ("float32.tif", SampleType::F32, Some(-9999.0)),
        ("float64.tif", SampleType::F64, None),
    ] {
        let mut r = Raster::open(fixture(name)).unwrap();
        assert_eq!(r.sample_type(), t, "{name}");
        assert_eq!(r.bands(), 3, "{name}");
        assert_eq!(r.nodata(), nodata, "{name}");
        let bands = [2, 0, 1];
        let window = r.read_window(-1, 2, 72, 47, &bands).unwrap();
        check_window(&window, &bands, t, nodata, nodata);
    }
}

#[test]
fn a_palette_file_should_read_as_its_indices() {
    let mut r = Raster::open(fixture("palette.tif")).unwrap();
    assert_eq!((r.bands(), r.sample_type()), (1, SampleType::U8));
    let window = r.read_window(0, 0, 70, 50, &[0]).unwrap();
    check_window(&window, &[0], SampleType::U8, None, None);
}

#[test]
fn a_cache_too_small_for_a_chunk_should_stream_the_same_values() {
    for name in [
        "u16_tiled_deflate.tif",
        "u16_stripped_lzw.tif",
        "u16_stripped_none.tif",
        "float64.tif",
    ] {
        let mut r = Raster::open(fixture(name)).unwrap();
        let t = r.sample_type();
        let bands: Vec<usize> = (0..r.bands()).rev().collect();
        for capacity in [0, 3000] {
            r.set_cache_capacity(capacity);
            for (x, y) in [(0, 0), (-4, 20), (33, 41)] {
                let window = r.read_window(x, y, 40, 30, &bands).unwrap();
                check_window(&window, &bands, t, None, None);
                assert!(r.cached_bytes() <= capacity);
            }
        }
    }
}

/// Classes from a window of the u16 fixture: band 0's value modulo `classes`.
fn class_of(v: f32, classes: u32) -> u32 {
    v as u32 % classes
}

/// gdalinfo -json -stats of `path`, or `None` (with a note) where gdalinfo is missing outside CI.
fn gdalinfo(path: &Path) -> Option<serde_json::Value> {
    let output = Command::new("gdalinfo")
        .args(["-json", "-stats"])
        .arg(path)
        .env("GDAL_PAM_ENABLED", "NO") // No .aux.xml next to the file.
        .output();
    match output {
        Ok(out) => {
            assert!(
                out.status.success(),
                "gdalinfo {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.trim().is_empty(),
                "gdalinfo {} warned: {stderr}",
                path.display()
            );
            Some(serde_json::from_slice(&out.stdout).unwrap())
        }
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("gdalinfo is needed in CI (Debian: apt-get install gdal-bin): {e}")
        }
        Err(e) => {
            eprintln!("skipping the gdalinfo checks: gdalinfo not found ({e}); Debian: apt-get install gdal-bin");
            None
        }
    }
}

/// Mean, minimum and maximum of `values` where `valid`.
fn stats(values: &[f32], valid: impl Fn(usize) -> bool) -> (f64, f64, f64) {
    let (mut sum, mut n, mut min, mut max) = (0.0f64, 0usize, f64::INFINITY, f64::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if valid(i) {
            let v = v as f64;
            sum += v;
            n += 1;
            min = min.min(v);
            max = max.max(v);
        }
    }
    (sum / n as f64, min, max)
}

/// Checks what gdalinfo says of a written file against the input's gdalinfo and the values written.
fn check_with_gdal(
    written: &Path,
    input: &serde_json::Value,
    bands: &[Vec<f32>],
    nodata: Option<f64>,
    gdal_type: &str,
    tile: usize,
) {
    let Some(info) = gdalinfo(written) else {
        return;
    };
    assert_eq!(info["size"], input["size"]);
    assert_eq!(info["geoTransform"], input["geoTransform"]);
    assert_eq!(
        info["coordinateSystem"]["wkt"],
        input["coordinateSystem"]["wkt"]
    );
    assert!(info["coordinateSystem"]["wkt"]
        .as_str()
        .unwrap()
        .contains("32633"));
    assert_eq!(
        info["metadata"][""]["AREA_OR_POINT"],
        input["metadata"][""]["AREA_OR_POINT"]
    );
    assert_eq!(
        info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"],
        "DEFLATE"
    );
    let gdal_bands = info["bands"].as_array().unwrap();
    assert_eq!(gdal_bands.len(), bands.len());
    for (band, values) in gdal_bands.iter().zip(bands) {
        assert_eq!(band["type"], gdal_type);
        assert_eq!(band["block"], serde_json::json!([tile, tile]));
        match nodata {
            Some(v) if v.is_nan() => assert_eq!(band["noDataValue"], "NaN"),
            Some(v) => assert_eq!(band["noDataValue"].as_f64(), Some(v)),
            None => assert!(band.get("noDataValue").is_none()),
        }
        let (mean, min, max) = stats(values, |i| {
            !values[i].is_nan() && nodata.is_none_or(|v| values[i] as f64 != v)
        });
        // gdalinfo prints statistics to 3 decimals; every value is checked below.
        for (key, ours) in [("minimum", min), ("maximum", max), ("mean", mean)] {
            let gdal = band[key].as_f64().unwrap();
            assert!(
                (gdal - ours).abs() <= 5e-4 + 1e-7 * ours.abs(),
                "{key}: gdalinfo {gdal}, atrous {ours}"
            );
        }
    }

    // Every value, as GDAL decodes it: gdal_translate to raw f64 planes (ENVI, band-sequential).
    let raw = written.with_extension("gdal.bin");
    let out = Command::new("gdal_translate")
        .args(["-q", "-of", "ENVI", "-ot", "Float64"])
        .arg(written)
        .arg(&raw)
        .env("GDAL_PAM_ENABLED", "NO")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gdal_translate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Vec<f64> = std::fs::read(&raw)
        .unwrap()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let expected: Vec<f64> = bands.iter().flatten().map(|&v| v as f64).collect();
    assert_eq!(decoded.len(), expected.len());
    for (i, (a, b)) in decoded.iter().zip(&expected).enumerate() {
        assert!(
            a == b || (a.is_nan() && b.is_nan()),
            "value {i}: GDAL {a}, written {b}"
        );
    }
    for f in [raw.clone(), raw.with_extension("hdr")] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn written_rasters_should_read_back_with_the_inputs_georeferencing() {
    let dir = temp_dir("roundtrip");
    let input_path = fixture("u16_nodata.tif");
    let mut input = Raster::open(&input_path).unwrap();
    let window = input.read_window(0, 0, 70, 50, &[0, 1, 2, 3]).unwrap();
    let input_info = gdalinfo(&input_path);

    // A u8 class map (nodata 255 where the input has none) in tiles of 32, rows handed over in uneven pieces.
    let mask: Vec<u8> = (0..70 * 50)
        .map(|i| {
            if window.valid[i] {
                class_of(window.band(0)[i], 7) as u8
            } else {
                255
            }
        })
        .collect();
    // A u16 class map (over 256 classes), and f32 probabilities (3 bands, NaN nodata).
    let mask16: Vec<u16> = (0..70 * 50)
        .map(|i| class_of(window.band(1)[i], 1000) as u16)
        .collect();
    let probs: Vec<f32> = (0..3 * 70 * 50)
        .map(|i| {
            let (b, p) = (i / (70 * 50), i % (70 * 50));
            if window.valid[p] {
                window.band(b)[p] / 65536.0
            } else {
                f32::NAN
            }
        })
        .collect();

    let write = |name: &str,
                 spec: WriterSpec,
                 write: &dyn Fn(&mut RasterWriter, usize, usize)|
     -> PathBuf {
        let path = dir.join(name);
        let mut w = RasterWriter::create(&path, &spec).unwrap();
        let mut y = 0;
        for rows in [1, 15, 16, 17, 1] {
            write(&mut w, y, rows);
            y += rows;
        }
        assert_eq!(y, 50);
        assert!(!path.exists(), "nothing under the final name before finish");
        w.finish().unwrap();
        path
    };
    let band_rows = |data: &[f32], bands: usize, y: usize, rows: usize| -> Vec<f32> {
        (0..bands)
            .flat_map(|b| {
                data[(b * 50 + y) * 70..(b * 50 + y + rows) * 70]
                    .iter()
                    .copied()
            })
            .collect()
    };
    let geo = input.geo().clone();
    let mask_path = write(
        "scene.mask.tif",
        WriterSpec::new(70, 50, 1, SampleType::U8)
            .tile(32)
            .geo(geo.clone())
            .nodata(Some(255.0)),
        &|w, y, rows| {
            w.write_rows(y, rows, &mask[y * 70..(y + rows) * 70])
                .unwrap()
        },
    );
    let mask16_path = write(
        "scene.mask16.tif",
        WriterSpec::new(70, 50, 1, SampleType::U16).geo(geo.clone()),
        &|w, y, rows| {
            w.write_rows(y, rows, &mask16[y * 70..(y + rows) * 70])
                .unwrap()
        },
    );
    let probs_path = write(
        "scene.probs.tif",
        WriterSpec::new(70, 50, 3, SampleType::F32)
            .tile(16)
            .geo(geo.clone())
            .nodata(Some(f64::NAN)),
        &|w, y, rows| {
            w.write_rows(y, rows, &band_rows(&probs, 3, y, rows))
                .unwrap()
        },
    );
    let bigtiff_path = write(
        "scene.bigtiff.tif",
        WriterSpec::new(70, 50, 3, SampleType::F32)
            .tile(16)
            .geo(geo.clone())
            .bigtiff(Some(true)),
        &|w, y, rows| {
            w.write_rows(y, rows, &band_rows(&probs, 3, y, rows))
                .unwrap()
        },
    );
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "scene.bigtiff.tif",
            "scene.mask.tif",
            "scene.mask16.tif",
            "scene.probs.tif"
        ]
    );

    // Read back by atrous.
    let mut back = Raster::open(&mask_path).unwrap();
    assert_eq!((back.width(), back.height(), back.bands()), (70, 50, 1));
    assert_eq!(
        (back.sample_type(), back.nodata(), back.is_tiled()),
        (SampleType::U8, Some(255.0), true)
    );
    assert_eq!(back.block_size(), (32, 32));
    assert_eq!(back.geo(), &geo);
    let m = back.read_window(0, 0, 70, 50, &[0]).unwrap();
    assert_eq!(m.data, mask.iter().map(|&v| v as f32).collect::<Vec<_>>());
    assert_eq!(m.valid, window.valid);

    let mut back = Raster::open(&mask16_path).unwrap();
    assert_eq!(
        (back.sample_type(), back.nodata(), back.block_size()),
        (SampleType::U16, None, (256, 256))
    );
    let m = back.read_window(0, 0, 70, 50, &[0]).unwrap();
    assert_eq!(m.data, mask16.iter().map(|&v| v as f32).collect::<Vec<_>>());

    for path in [&probs_path, &bigtiff_path] {
        let mut back = Raster::open(path).unwrap();
        assert_eq!((back.bands(), back.sample_type()), (3, SampleType::F32));
        assert_eq!(back.geo(), &geo);
        let p = back.read_window(0, 0, 70, 50, &[0, 1, 2]).unwrap();
        for (a, b) in p.data.iter().zip(&probs) {
            assert!(a == b || (a.is_nan() && b.is_nan()));
        }
        assert_eq!(p.valid, window.valid);
    }
    let head = std::fs::read(&bigtiff_path).unwrap();
    assert_eq!(&head[..4], b"II\x2b\x00", "BigTIFF header");
    assert_eq!(
        &std::fs::read(&probs_path).unwrap()[..4],
        b"II\x2a\x00",
        "classic header"
    );

    // Read back by GDAL: CRS, geotransform, nodata, type, tiling, compression and statistics.
    let Some(input_info) = input_info else {
        return;
    };
    let as_f32 = |v: &[u8]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
    check_with_gdal(
        &mask_path,
        &input_info,
        &[as_f32(&mask)],
        Some(255.0),
        "Byte",
        32,
    );
    let m16: Vec<f32> = mask16.iter().map(|&v| v as f32).collect();
    check_with_gdal(&mask16_path, &input_info, &[m16], None, "UInt16", 256);
    let planes: Vec<Vec<f32>> = probs.chunks(70 * 50).map(|c| c.to_vec()).collect();
    check_with_gdal(
        &probs_path,
        &input_info,
        &planes,
        Some(f64::NAN),
        "Float32",
        16,
    );
    check_with_gdal(&bigtiff_path, &input_info, &planes, None, "Float32", 16);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_writer_dropped_before_finish_should_leave_no_file() {
    let dir = temp_dir("dropped");
    let path = dir.join("x.mask.tif");
    let mut w =
        RasterWriter::create(&path, &WriterSpec::new(40, 40, 1, SampleType::U8).tile(16)).unwrap();
    w.write_rows(0, 20, &[1u8; 40 * 20]).unwrap();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "the temporary file exists while writing"
    );
    drop(w);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    // finish with rows missing: an error, and no file either.
    let mut w =
        RasterWriter::create(&path, &WriterSpec::new(40, 40, 1, SampleType::U8).tile(16)).unwrap();
    w.write_rows(0, 39, &[1u8; 40 * 39]).unwrap();
    let e = w.finish().unwrap_err().to_string();
    assert!(
        e.contains("x.mask.tif") && e.contains("39 of 40 rows"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_misuse_should_be_an_error_naming_the_file() {
    let dir = temp_dir("misuse");
    let path = dir.join("m.tif");
    let spec = WriterSpec::new(20, 10, 2, SampleType::U16).tile(16);
    let mut w = RasterWriter::create(&path, &spec).unwrap();
    let errors = [
        w.write_rows(0, 1, &[0u8; 40]).unwrap_err(), // wrong type
        w.write_rows(1, 1, &[0u16; 40]).unwrap_err(), // out of order
        w.write_rows(0, 1, &[0u16; 39]).unwrap_err(), // wrong length
        w.write_rows(0, 11, &[0u16; 440]).unwrap_err(), // past the end
    ];
    for e in errors {
        assert!(e.to_string().contains("m.tif"), "{e}");
    }
    drop(w);
    for spec in [
        WriterSpec::new(0, 10, 1, SampleType::U8),
        WriterSpec::new(10, 10, 0, SampleType::U8),
        WriterSpec::new(10, 10, 1, SampleType::U8).tile(100),
        WriterSpec::new(usize::MAX / 2, usize::MAX / 2, 1, SampleType::U8),
        WriterSpec::new(4_000_000_000, 1000, 65535, SampleType::F64),
    ] {
        let e = RasterWriter::create(&path, &spec).unwrap_err().to_string();
        assert!(e.contains("m.tif"), "{e}");
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes a `width` x `height` u8 raster in 100-row pieces, checking after each that the writer holds at most one
/// row of tiles plus a tile or two; returns the largest amount it held.
fn write_tall(path: &Path, width: usize, height: usize, tile: usize) -> usize {
    let mut w = RasterWriter::create(
        path,
        &WriterSpec::new(width, height, 1, SampleType::U8).tile(tile),
    )
    .unwrap();
    let bound = tile * width + 3 * tile * tile + 4096;
    let mut most = 0;
    let mut rows = vec![0u8; 100 * width];
    let mut y = 0;
    while y < height {
        let n = 100.min(height - y);
        for (i, v) in rows[..n * width].iter_mut().enumerate() {
            *v = ((y + i / width) % 251) as u8;
        }
        w.write_rows(y, n, &rows[..n * width]).unwrap();
        y += n;
        most = most.max(w.buffered_bytes());
        assert!(
            w.buffered_bytes() <= bound,
            "{} bytes held at row {y}",
            w.buffered_bytes()
        );
    }
    w.finish().unwrap();
    most
}

#[test]
fn memory_should_not_depend_on_the_scenes_height() {
    let dir = temp_dir("memory");
    let (width, tile) = (64, 256);
    let tall = write_tall(&dir.join("tall.tif"), width, 12_000, tile);
    let taller = write_tall(&dir.join("taller.tif"), width, 48_000, tile);
    assert_eq!(
        tall, taller,
        "the writer holds the same however tall the scene"
    );
    assert!(tall < 12_000 * width / 4, "{tall} bytes held");

    // Reading windows down the whole scene keeps the cache within its capacity.
    let mut r = Raster::open(dir.join("taller.tif")).unwrap();
    r.set_cache_capacity(64 << 10);
    for y in (0..48_000).step_by(997) {
        let window = r.read_window(-8, y, 80, 300, &[0]).unwrap();
        assert!(r.cached_bytes() <= 64 << 10);
        for row in 0..300.min(48_000 - y as usize) {
            assert_eq!(
                window.band(0)[row * 80 + 8],
                ((y as usize + row) % 251) as f32
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The error's message names the file and contains `what`.
fn assert_refused(path: &Path, what: &str) {
    let e = Raster::open(path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains(what), "{e:?} should say {what:?}");
    assert!(!e.contains('\n'), "one line: {e:?}");
}

#[test]
fn unsupported_samples_should_be_refused() {
    assert_refused(&fixture("bits1.tif"), "1-bit");
    assert_refused(&fixture("complex.tif"), "complex");
}

#[test]
fn a_band_out_of_range_should_be_an_error_naming_the_file() {
    let mut r = Raster::open(fixture("u16_tiled_deflate.tif")).unwrap();
    let e = r.read_window(0, 0, 8, 8, &[0, 4]).unwrap_err().to_string();
    assert!(
        e.contains("u16_tiled_deflate.tif") && e.contains("band 5 is out of range"),
        "{e}"
    );
    assert!(r.read_window(0, 0, 8, 8, &[]).is_err());
    let e = r
        .read_window(0, 0, 1 << 20, 1 << 20, &[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("over the limit"), "{e}");
    assert!(r.read_window(i64::MAX, 0, 8, 8, &[0]).is_err());
}

#[test]
fn truncated_files_should_be_refused() {
    let dir = temp_dir("truncated");
    for name in [
        "u16_tiled_deflate.tif",
        "u16_stripped_none.tif",
        "u16_tiled_bigtiff.tif",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for keep in [bytes.len() * 3 / 5, bytes.len() - 1] {
            let path = dir.join(format!("cut-{keep}-{name}"));
            std::fs::write(&path, &bytes[..keep]).unwrap();
            assert_refused(&path, "truncated");
        }
        for keep in [0, 5, 12] {
            let path = dir.join(format!("cut-{keep}-{name}"));
            std::fs::write(&path, &bytes[..keep]).unwrap();
            assert_refused(&path, "not a readable TIFF");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A little-endian classic TIFF: one u8 band of `width` x `height` in one uncompressed strip of `strip_bytes`
/// bytes (which follow the directory), with `extra` more entries (tag, type, count, value).
fn crafted_tiff(
    width: u32,
    height: u32,
    strip_bytes: u32,
    extra: &[(u16, u16, u32, u32)],
) -> Vec<u8> {
    let mut entries = vec![
        (256u16, 4u16, 1u32, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 0), // strip offset, patched below
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, strip_bytes),
    ];
    entries.extend_from_slice(extra);
    entries.sort_by_key(|e| e.0);
    let data_at = 8 + 2 + entries.len() as u32 * 12 + 4;
    let mut out = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        let value = if tag == 273 { data_at } else { value };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        if kind == 3 && count == 1 {
            out.extend_from_slice(&(value as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.resize(out.len() + strip_bytes as usize, 7);
    out
}

#[test]
fn crafted_headers_should_be_refused_before_allocating() {
    let dir = temp_dir("crafted");
    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // The crafting itself is sound: a small one reads.
    let ok = write("ok.tif", crafted_tiff(4, 3, 12, &[]));
    let mut r = Raster::open(&ok).unwrap();
    assert_eq!(r.read_window(0, 0, 4, 3, &[0]).unwrap().data, vec![7.0; 12]);

    // 4e9 x 4e9 pixels in one strip of 16 bytes.
    assert_refused(
        &write(
            "huge.tif",
            crafted_tiff(4_000_000_000, 4_000_000_000, 16, &[]),
        ),
        "over the limit",
    );
    // One row of 2^31 pixels (2 GiB) in a strip.
    assert_refused(
        &write("wide.tif", crafted_tiff(1 << 31, 1, 16, &[])),
        "over the limit",
    );
    // Uncompressed strip smaller than its pixels.
    assert_refused(
        &write("short.tif", crafted_tiff(100, 100, 16, &[])),
        "truncated",
    );
    // A tag claiming a billion values the file does not have.
    assert_refused(
        &write(
            "count.tif",
            crafted_tiff(4, 3, 12, &[(33550, 12, 1_000_000_000, 64)]),
        ),
        "run past the end",
    );
    // 65,535 bands.
    assert_refused(
        &write("bands.tif", {
            let mut t = crafted_tiff(4, 3, 12, &[]);
            // SamplesPerPixel (277) is the 7th entry: its value field is at 10 + 6 * 12 + 8.
            t[10 + 6 * 12 + 8..10 + 6 * 12 + 10].copy_from_slice(&65535u16.to_le_bytes());
            t
        }),
        "truncated",
    );
    assert_refused(
        &write("text.tif", b"this is not a TIFF at all".to_vec()),
        "no TIFF signature",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mutated_files_should_read_or_fail_cleanly() {
    let iterations: usize = std::env::var("ATROUS_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = temp_dir("mutated");
    let seeds: Vec<Vec<u8>> = [
        "u16_tiled_deflate.tif",
        "u16_stripped_lzw.tif",
        "u16_stripped_packbits.tif",
        "float64.tif",
        "u16_tiled_bigtiff.tif",
    ]
    .iter()
    .map(|n| std::fs::read(fixture(n)).unwrap())
    .collect();
    let mut rng = SmallRng::seed_from_u64(42);
    let path = dir.join("m.tif");
    let (mut opened, mut read) = (0, 0);
    for _ in 0..iterations {
        let mut bytes = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..8) {
            // Mostly the header and directory (the first 600 bytes), sometimes anywhere.
            let limit = if rng.random_bool(0.8) {
                600.min(bytes.len())
            } else {
                bytes.len()
            };
            let at = rng.random_range(0..limit);
            bytes[at] = match rng.random_range(0..3) {
                0 => rng.random(),
                1 => 0xFF,
                _ => 0,
            };
        }
        std::fs::write(&path, &bytes).unwrap();
        let Ok(mut r) = Raster::open(&path) else {
            continue;
        };
        opened += 1;
        let bands: Vec<usize> = (0..r.bands().min(4)).collect();
        let (w, h) = (r.width().min(100), r.height().min(100));
        if r.read_window(-1, -1, w, h, &bands).is_ok() {
            read += 1;
        }
    }
    eprintln!("{iterations} mutated files: {opened} opened, {read} read");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn geo_tags_should_give_gdals_geotransform() {
    let mut geo = GeoTags {
        model_pixel_scale: Some(vec![10.0, 20.0, 0.0]),
        model_tiepoint: Some(vec![0.0, 0.0, 0.0, 100.0, 200.0, 0.0]),
        ..GeoTags::default()
    };
    assert_eq!(
        geo.geotransform(),
        Some([100.0, 10.0, 0.0, 200.0, 0.0, -20.0])
    );
    // PixelIsPoint (GTRasterTypeGeoKey 1025 = 2): GDAL moves the origin half a pixel up and left.
    geo.geo_key_directory = Some(vec![1, 1, 0, 2, 1025, 0, 1, 2, 3072, 0, 1, 32633]);
    assert_eq!(
        geo.geotransform(),
        Some([95.0, 10.0, 0.0, 210.0, 0.0, -20.0])
    );
    assert_eq!(geo.epsg(), Some(32633));
    let rotated = GeoTags {
        model_transformation: Some(vec![
            1.0, 2.0, 0.0, 7.0, 3.0, -4.0, 0.0, 8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ]),
        ..GeoTags::default()
    };
    assert_eq!(
        rotated.geotransform(),
        Some([7.0, 1.0, 2.0, 8.0, 3.0, -4.0])
    );
    assert!(GeoTags::default().is_empty() && GeoTags::default().geotransform().is_none());
}

#[test]
fn sparse_strips_should_read_as_nodata_or_zero() {
    let dir = temp_dir("sparse");
    // A strip with no bytes (GDAL's SPARSE_OK): zeros, valid without nodata...
    let path = dir.join("sparse.tif");
    std::fs::write(&path, crafted_tiff(4, 3, 0, &[])).unwrap();
    let mut r = Raster::open(&path).unwrap();
    let window = r.read_window(-1, 0, 5, 3, &[0]).unwrap();
    assert_eq!(window.data, vec![0.0; 15]);
    assert_eq!(window.valid_count(), 12);
    // ...and invalid with it (GDAL_NODATA "0", two ASCII bytes held in the entry itself).
    let path = dir.join("sparse-nodata.tif");
    std::fs::write(
        &path,
        crafted_tiff(4, 3, 0, &[(42113, 2, 2, u32::from(b'0'))]),
    )
    .unwrap();
    let mut r = Raster::open(&path).unwrap();
    assert_eq!(r.nodata(), Some(0.0));
    assert_eq!(r.read_window(0, 0, 4, 3, &[0]).unwrap().valid_count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bigtiff_should_be_chosen_where_the_file_could_pass_4_gib() {
    let dir = temp_dir("bigtiff");
    let path = dir.join("b.tif");
    // 20,000 x 60,000 f32 is 4.8 GB raw; 12,000 x 12,000 u8 is 144 MB.
    let big =
        RasterWriter::create(&path, &WriterSpec::new(20_000, 60_000, 1, SampleType::F32)).unwrap();
    assert!(big.is_bigtiff());
    drop(big);
    let small =
        RasterWriter::create(&path, &WriterSpec::new(12_000, 12_000, 1, SampleType::U8)).unwrap();
    assert!(!small.is_bigtiff());
    drop(small);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn readers_and_writers_should_move_between_threads() {
    fn send<T: Send>() {}
    send::<Raster>();
    send::<RasterWriter>();
    send::<Window>();
}

/// A raster written strip by strip (whole tile columns, each strip top to bottom, its tiles in the file in that
/// order) reads back exactly like the same raster written row by row, through atrous and through gdalinfo; the
/// writer then holds one row of one strip's tiles; strips out of order, off tile columns or missing are errors
/// naming the file.
#[test]
fn a_raster_written_in_strips_should_read_as_one_written_in_rows() {
    let dir = temp_dir("strips");
    let (width, height, bands, tile) = (100, 45, 3, 32);
    let value = |b: usize, y: usize, x: usize| {
        (hash(x as i64, y as i64).rem_euclid(60_000) as usize + b * 1000) as u16
    };
    let block = |x0: usize, y0: usize, cols: usize, rows: usize| -> Vec<u16> {
        let mut out = Vec::with_capacity(bands * rows * cols);
        for b in 0..bands {
            for y in y0..y0 + rows {
                out.extend((x0..x0 + cols).map(|x| value(b, y, x)));
            }
        }
        out
    };
    let spec = WriterSpec::new(width, height, bands, SampleType::U16)
        .tile(tile)
        .nodata(Some(65535.0));
    let rows_path = dir.join("rows.tif");
    let mut w = RasterWriter::create(&rows_path, &spec).unwrap();
    w.write_rows(0, height, &block(0, 0, width, height))
        .unwrap();
    let full_row_bytes = w.buffered_bytes();
    w.finish().unwrap();

    let strips_path = dir.join("strips.tif");
    let mut w = RasterWriter::create(&strips_path, &spec).unwrap();
    // One tile column, two, and the narrow last one (100 = 3 x 32 + 4).
    for (x0, cols) in [(0, 32), (32, 64), (96, 4)] {
        let mut y = 0;
        for rows in [7, 20, 18] {
            w.write_block(x0, y, cols, rows, &block(x0, y, cols, rows))
                .unwrap();
            y += rows;
        }
        assert!(
            w.buffered_bytes() < full_row_bytes || cols == 64,
            "columns {x0}..: {} bytes held",
            w.buffered_bytes()
        );
    }
    w.finish().unwrap();

    for path in [&rows_path, &strips_path] {
        let mut back = Raster::open(path).unwrap();
        assert_eq!(
            (back.width(), back.height(), back.bands()),
            (width, height, bands)
        );
        let all = back.read_window(0, 0, width, height, &[0, 1, 2]).unwrap();
        let expected: Vec<f32> = block(0, 0, width, height)
            .iter()
            .map(|&v| v as f32)
            .collect();
        assert!(all.data == expected, "{}: values differ", path.display());
    }
    if let (Some(a), Some(b)) = (gdalinfo(&rows_path), gdalinfo(&strips_path)) {
        for band in 0..bands {
            let stats = |info: &serde_json::Value| {
                let b = &info["bands"][band];
                (
                    b["minimum"].clone(),
                    b["maximum"].clone(),
                    b["mean"].clone(),
                    b["stdDev"].clone(),
                )
            };
            assert_eq!(
                stats(&a),
                stats(&b),
                "band {band}: gdalinfo's statistics differ"
            );
            assert_eq!(b["bands"][band]["block"], serde_json::json!([tile, tile]));
        }
        assert_eq!(a["size"], b["size"]);
    }

    let misuse = |f: &dyn Fn(&mut RasterWriter) -> atrous::Result<()>| {
        let path = dir.join("bad.tif");
        let mut w = RasterWriter::create(&path, &spec).unwrap();
        let e = f(&mut w).and_then(|()| w.finish()).expect_err("an error");
        assert!(e.to_string().contains("bad.tif"), "{e}");
        assert!(!path.exists());
    };
    // Not on tile columns; the first strip not at column 0; a strip started before the last is complete; a
    // strip missing at the end.
    misuse(&|w| w.write_block(0, 0, 20, 1, &block(0, 0, 20, 1)));
    misuse(&|w| w.write_block(32, 0, 32, 1, &block(32, 0, 32, 1)));
    misuse(&|w| {
        w.write_block(0, 0, 32, 10, &block(0, 0, 32, 10))?;
        w.write_block(32, 0, 32, 1, &block(32, 0, 32, 1))
    });
    misuse(&|w| w.write_block(0, 0, 64, height, &block(0, 0, 64, height)));
    std::fs::remove_dir_all(&dir).unwrap();
}
