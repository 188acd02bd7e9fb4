//! Tiled inference over georeferenced scenes: the window grid and blending weights cover every pixel; a tiled
//! run agrees with the whole scene run as one band frame by the same engine (a 4-band u16 GeoTIFF, a small
//! random-weight 4-channel network built here) and, at the size, with PyTorch running a trained 4-band UNet
//! over the whole scene; nodata stays nodata; and the command line (`atrous segment --tile`, or TIFF files alone)
//! writes georeferenced masks and probabilities (checked by gdalinfo), shards an archive, skips finished scenes, and
//! refuses bad scenes and options with one line naming the file, leaving nothing behind.
//!
//! The GDAL checks run `gdalinfo` (Debian: gdal-bin); where it is missing they print a note and skip, unless `CI` is
//! set, where a missing gdalinfo fails.

mod common;

use atrous::graph::GraphBuilder;
use atrous::model::{InputSize, PreprocessSpec};
use atrous::ops::{
    Activation, ChannelOrder, Conv2d, MaxPool2d, Normalize, Padding2d, Resize, ResizeMode,
    ResizeTarget,
};
use atrous::raster::{GeoTags, Raster, RasterWriter, SampleType, WriterSpec};
use atrous::segment::{Frame, Readback, Request};
use atrous::tiles::{fit_window, origins, segment_scene, weights, Grid, Rows, TileOptions};
use atrous::{Model, Segmenter};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const BANDS: usize = 4;
const MEAN: [f32; BANDS] = [2000.0, 2100.0, 1900.0, 3000.0];
const STD: [f32; BANDS] = [600.0, 500.0, 700.0, 900.0];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atrous-tiles-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn raster_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/raster")
        .join(name)
}

fn smp_4band() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smp/unet_4band")
}

/// A small random-weight network on four bands with a receptive field of about 30 pixels: two 3x3 convs and a
/// dilated one between two 2x poolings, a 1x1 head to three classes, bilinear x4 back to the input's size.
fn four_band_model() -> Model {
    let mut r = rng(2);
    let mut b = GraphBuilder::new();
    let x = b.input("input", BANDS);
    let mut conv =
        |b: &mut GraphBuilder, name: &str, x: &str, cin: usize, cout: usize, k: usize, d: usize| {
            let p = Conv2d {
                padding: Padding2d::uniform(d * (k / 2)),
                dilation: [d, d],
                // The last conv is linear: features of both signs, so no class takes everything.
                activation: match name {
                    "c3" => Activation::None,
                    _ => Activation::Relu,
                },
                ..Conv2d::new(cin, cout, [k, k])
            };
            let w = conv_weights(&mut r, [cout, cin, k, k], cout, true, false);
            b.conv2d(name, x, p, w).unwrap()
        };
    let c1 = conv(&mut b, "c1", &x, BANDS, 8, 3, 1);
    let p1 = b.max_pool2d("p1", &c1, MaxPool2d::new([2, 2]));
    let c2 = conv(&mut b, "c2", &p1, 8, 8, 3, 2);
    let p2 = b.max_pool2d("p2", &c2, MaxPool2d::new([2, 2]));
    let c3 = conv(&mut b, "c3", &p2, 8, 8, 3, 1);
    let head = Conv2d::new(8, 3, [1, 1]);
    // No bias, so the classes follow the features rather than a constant.
    let w = conv_weights(&mut r, [3, 8, 1, 1], 3, false, false);
    let logits = b.conv2d("head", &c3, head, w).unwrap();
    let up = Resize {
        mode: ResizeMode::Bilinear {
            align_corners: false,
        },
        target: ResizeTarget::Scale([4.0, 4.0]),
    };
    b.resize("out", &logits, up);
    let mut model = b.finish(&["out"]).unwrap();
    model.info.preprocess = Some(PreprocessSpec {
        mean: [0.0; 3],
        std: [1.0; 3],
        value_range: [0.0, 1.0],
        channel_order: ChannelOrder::Rgb,
        input_size: InputSize::Original { multiple_of: 4 },
        bands: Some(Normalize {
            mean: MEAN.to_vec(),
            std: STD.to_vec(),
        }),
    });
    model
}

/// A `width x height` 4-band u16 scene: smooth fields plus noise, EPSG:32633, 10 m pixels; with `nodata`, that
/// value in every band where `(x + 2y) % 37 == 0` or x < 3.
fn write_scene(path: &Path, width: usize, height: usize, nodata: Option<u16>) {
    write_u16_scene(path, width, height, 64, nodata, |b, x, y| {
        if let Some(n) = nodata.filter(|_| (x + 2 * y) % 37 == 0 || x < 3) {
            return n;
        }
        let (xf, yf, bf) = (x as f32, y as f32, b as f32);
        let field = (xf / 19.0 + bf).sin() * (yf / 23.0 - bf).cos()
            + 0.6 * ((xf + yf) / 41.0 + 2.0 * bf).sin();
        let noise = (hash(x, y) ^ (b * 83492791)) % 301;
        let v = MEAN[b] + STD[b] * field + noise as f32 - 150.0;
        v.clamp(1.0, 65000.0) as u16
    });
}

/// A 4-band u16 GeoTIFF (EPSG:32633, 10 m pixels, `tile`-pixel deflate tiles) of `value(band, x, y)`.
fn write_u16_scene(
    path: &Path,
    width: usize,
    height: usize,
    tile: usize,
    nodata: Option<u16>,
    value: impl Fn(usize, usize, usize) -> u16,
) {
    let geo = GeoTags {
        model_pixel_scale: Some(vec![10.0, 10.0, 0.0]),
        model_tiepoint: Some(vec![0.0, 0.0, 0.0, 500000.0, 5000000.0, 0.0]),
        geo_key_directory: Some(vec![
            1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633,
        ]),
        ..GeoTags::default()
    };
    let spec = WriterSpec::new(width, height, BANDS, SampleType::U16)
        .tile(tile)
        .geo(geo)
        .nodata(nodata.map(f64::from));
    let mut w = RasterWriter::create(path, &spec).unwrap();
    let mut data = vec![0u16; BANDS * width * height];
    for b in 0..BANDS {
        for y in 0..height {
            for x in 0..width {
                data[(b * height + y) * width + x] = value(b, x, y);
            }
        }
    }
    w.write_rows(0, height, &data).unwrap();
    w.finish().unwrap();
}

/// `tools/make_scene.py --pattern parcels`: slanted parcels of five land covers (per-band reflectance x 10,000),
/// a per-parcel brightness shift and per-pixel noise, by the script's formula.
fn parcels(b: usize, x: usize, y: usize) -> u16 {
    const LEVELS: [[usize; 4]; 5] = [
        [600, 500, 300, 150],
        [300, 500, 300, 3000],
        [500, 800, 600, 4000],
        [1200, 1400, 1700, 2200],
        [1500, 1500, 1600, 1800],
    ];
    let h = parcel_hash(x, y);
    let v = LEVELS[(h >> 7) % 5][b % 4] + (h >> 11) % 400 + (hash(x, y) ^ (b * 83492791)) % 301;
    v as u16
}

/// The land cover (0..5) of the `parcels` pattern at a pixel: the ground truth.
fn parcel_cover(x: usize, y: usize) -> usize {
    (parcel_hash(x, y) >> 7) % 5
}

fn parcel_hash(x: usize, y: usize) -> usize {
    hash((x + y / 3) / 83, (y + x / 5) / 71)
}

fn hash(x: usize, y: usize) -> usize {
    (x * 73856093) ^ (y * 19349663)
}

/// The class map of the whole scene, run as one band frame at its own size.
fn whole_scene(segmenter: &Segmenter, path: &Path) -> Vec<u32> {
    let mut raster = Raster::open(path).unwrap();
    let (w, h) = (raster.width(), raster.height());
    let window = raster.read_window(0, 0, w, h, &[0, 1, 2, 3]).unwrap();
    let frame = Frame::Bands {
        data: &window.data,
        channels: BANDS,
        width: w,
        height: h,
    };
    let request = Request {
        readback: Some(Readback::Classes),
        ..Default::default()
    };
    let mut stream = segmenter.stream();
    stream
        .submit(frame, &request)
        .unwrap()
        .readback
        .unwrap()
        .wait()
        .unwrap()
        .classes
}

/// A tiled run's class map and validity, gathered from its rows (checked to arrive in order, full width).
fn tiled(
    segmenter: &Segmenter,
    path: &Path,
    tile: usize,
    overlap: usize,
    batch: usize,
) -> (Vec<u32>, Vec<bool>, atrous::tiles::SceneStats) {
    let (classes, valid, _, stats) =
        tiled_with(segmenter, path, options(tile, overlap, batch, None));
    (classes, valid, stats)
}

fn options(tile: usize, overlap: usize, batch: usize, strip: Option<usize>) -> TileOptions {
    TileOptions {
        tile,
        overlap,
        batch,
        bands: vec![0, 1, 2, 3],
        probabilities: true,
        strip,
    }
}

/// A tiled run's class map, validity and blended probabilities (`classes x height x width`), gathered from its
/// runs of rows, checked to come strip by strip, left to right, each strip top to bottom and whole.
fn tiled_with(
    segmenter: &Segmenter,
    path: &Path,
    options: TileOptions,
) -> (Vec<u32>, Vec<bool>, Vec<f32>, atrous::tiles::SceneStats) {
    let mut raster = Raster::open(path).unwrap();
    let (w, h) = (raster.width(), raster.height());
    let classes_n = segmenter.class_count().max(2);
    let (mut classes, mut valid) = (vec![u32::MAX; w * h], vec![false; w * h]);
    let mut probs = vec![f32::NAN; classes_n * w * h];
    // The next strip's first column, the current strip's, and the next row of the current strip.
    let (mut next_x, mut strip_x, mut next_y) = (0, 0, h);
    let stats = segment_scene(
        segmenter,
        &mut raster,
        &options,
        |rows: Rows| {
            if next_y == h {
                assert_eq!(
                    (rows.x0, rows.y0),
                    (next_x, 0),
                    "a new strip at the last one's end"
                );
                strip_x = rows.x0;
                next_x = rows.x0 + rows.width;
                next_y = 0;
            }
            assert_eq!((rows.x0, rows.y0), (strip_x, next_y), "rows in order");
            assert_eq!(rows.classes.len(), rows.rows * rows.width);
            let n = rows.classes.len();
            for k in 0..n {
                let at = (rows.y0 + k / rows.width) * w + rows.x0 + k % rows.width;
                classes[at] = rows.classes[k];
                valid[at] = rows.valid[k];
                if let Some(p) = &rows.probabilities {
                    for c in 0..classes_n {
                        probs[c * w * h + at] = p[c * n + k];
                    }
                }
            }
            next_y += rows.rows;
            Ok(())
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!((next_x, next_y), (w, h), "every strip finished");
    assert!(
        classes.iter().all(|&c| c != u32::MAX),
        "every pixel written"
    );
    (classes, valid, probs, stats)
}

fn agreement(a: &[u32], b: &[u32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

#[test]
fn windows_and_weights_should_cover_every_pixel() {
    for len in [1, 7, 64, 100, 128, 129, 300, 1000] {
        for (window, stride) in [(64, 48), (128, 96), (32, 32), (16, 1)] {
            let at = origins(len, window, stride);
            assert_eq!(at[0], 0);
            let mut covered = vec![0; len];
            for &p in &at {
                for c in covered.iter_mut().skip(p).take(window) {
                    *c += 1;
                }
            }
            assert!(covered.iter().all(|&c| c >= 1), "{len} {window} {stride}");
            assert!(at.windows(2).all(|w| w[0] < w[1] && w[1] - w[0] <= stride));
            assert!(len <= window || *at.last().unwrap() + window == len);
        }
    }
    for (first, last) in [(false, false), (true, false), (false, true), (true, true)] {
        let w = weights(64, first, last);
        assert!(w.iter().all(|&v| v > 0.0 && v <= 1.0));
        assert_eq!(w[0] == 1.0, first);
        assert_eq!(w[63] == 1.0, last);
        assert!((w[31] - 1.0).abs() < 1e-2);
    }
    let grid = Grid::new(300, 260, 128, 32, 16).unwrap();
    assert_eq!(grid.window, (128, 128));
    assert_eq!(
        (grid.xs.clone(), grid.ys.clone()),
        (vec![0, 96, 172], vec![0, 96, 132])
    );
    // Scenes smaller than a window: one window, the scene rounded up to the size multiple.
    let small = Grid::new(70, 50, 128, 32, 16).unwrap();
    assert_eq!((small.window, small.count()), ((80, 64), 1));
    assert!(Grid::new(300, 260, 32, 32, 16).is_err());
}

#[test]
fn tiled_inference_should_agree_with_the_whole_scene() {
    let gpu = gpu_or_skip!();
    let dir = temp_dir("agree");
    let scene = dir.join("scene.tif");
    let (w, h) = (320, 272);
    write_scene(&scene, w, h, None);
    let segmenter = Segmenter::new(gpu, four_band_model()).unwrap();
    let whole = whole_scene(&segmenter, &scene);
    let counts = (0..3)
        .map(|c| whole.iter().filter(|&&k| k == c).count())
        .collect::<Vec<_>>();
    eprintln!("whole-scene class counts {counts:?}");
    assert!(
        counts.iter().filter(|&&n| n > w * h / 10).count() >= 2,
        "a class map with structure"
    );
    let mut results = Vec::new();
    for (tile, overlap, batch) in [(128, 32, 2), (128, 0, 1), (96, 48, 3), (512, 64, 1)] {
        let (classes, valid, stats) = tiled(&segmenter, &scene, tile, overlap, batch);
        assert!(valid.iter().all(|&v| v));
        let a = agreement(&classes, &whole);
        eprintln!(
            "tile {tile} overlap {overlap} batch {batch}: {} windows, agreement {:.3}% ({:.3} MP/s)",
            stats.windows,
            100.0 * a,
            stats.megapixels_per_second(w, h)
        );
        // Memory: the blending band is one window tall, never the scene.
        let (ww, wh) = stats.window;
        assert!(ww <= tile && wh <= tile);
        assert!(stats.band_bytes <= w * wh.min(h) * (3 * 4 + 4 + 1));
        results.push(a);
    }
    assert!(results[0] >= 0.99, "tile 128 overlap 32: {}", results[0]);
    assert!(results[2] >= 0.99, "tile 96 overlap 48: {}", results[2]);
    // A hard cut (no overlap) loses more at window edges: the check can tell.
    assert!(
        results[1] < results[0],
        "hard cut {} vs overlap {}",
        results[1],
        results[0]
    );
    // One window covering the whole scene is the whole-scene run.
    assert!(results[3] >= 0.9999, "one window: {}", results[3]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The check at its size, against PyTorch: a milesial UNet with 4 input channels (`UNet(4, 5, base=8)`,
/// trained for 400 steps on the parcels' land covers, 99.68% right on this scene in PyTorch) on a 1504 x 1312
/// 4-band u16 GeoTIFF of land-cover parcels, segmented by the command line with `--tile 1024 --overlap 128` and
/// `--tile 512 --overlap 128`, agrees with PyTorch's class map of the whole scene at once on at least 99% and 96% of
/// the pixels (measured: 100% and 99.9999%), and better than a hard cut (`--overlap 0`, 99.993%); the masks carry
/// the scene's CRS and geotransform as GDAL reads them, and get the covers right. The fixture (weights, PyTorch's
/// class map, the normalisation) is made by `tools/tiled_vs_whole.py --network unet --base 8 --pattern parcels
/// --train 400 --fixture tests/fixtures/tiles`; the scene is written here by the formula of the script's
/// `make_scene.py --pattern parcels`.
#[test]
fn tiled_unet_should_agree_with_pytorch_on_the_whole_scene() {
    if common::gpu().is_none() {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiles");
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("scene.json")).unwrap()).unwrap();
    let size = |key: &str| facts[key].as_u64().unwrap() as usize;
    let (w, h) = (size("width"), size("height"));
    let dir = temp_dir("pytorch");
    let scene = dir.join("scene.tif");
    write_u16_scene(&scene, w, h, 256, None, parcels);
    // This copy of the formula writes the scene PyTorch saw: the per-band sums agree.
    let all = Raster::open(&scene)
        .unwrap()
        .read_window(0, 0, w, h, &[0, 1, 2, 3])
        .unwrap();
    let sums: Vec<u64> = all
        .data
        .chunks(w * h)
        .map(|band| band.iter().map(|&v| v as u64).sum())
        .collect();
    let recorded: Vec<u64> = facts["band_sums"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(sums, recorded, "the scene differs from the fixture's");
    drop(all);
    let pytorch = image::open(fixture.join("whole.png")).unwrap().to_luma8();
    assert_eq!(pytorch.dimensions(), (w as u32, h as u32));
    let list = |key: &str| {
        let values: Vec<String> = facts[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap().to_string())
            .collect();
        values.join(",")
    };
    let (mean, std) = (list("mean"), list("std"));
    let model = fixture.join("unet4.safetensors");
    let source = gdalinfo(&scene);
    let mut agreements = Vec::new();
    for (tile, overlap, least) in [(1024, 128, 0.99), (512, 128, 0.96), (512, 0, 0.9)] {
        let out = dir.join(format!("out-{tile}-{overlap}"));
        let o = atrous(&[
            "segment",
            "--model",
            model.to_str().unwrap(),
            "--tile",
            &tile.to_string(),
            "--overlap",
            &overlap.to_string(),
            "--mean",
            &mean,
            "--std",
            &std,
            "--out",
            out.to_str().unwrap(),
            scene.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mask = out.join("scene.mask.tif");
        let classes = Raster::open(&mask)
            .unwrap()
            .read_window(0, 0, w, h, &[0])
            .unwrap();
        let same = classes
            .data
            .iter()
            .zip(pytorch.as_raw())
            .filter(|(&a, &b)| a == b as f32)
            .count();
        let agreement = same as f64 / (w * h) as f64;
        eprintln!(
            "tile {tile} overlap {overlap}: {:.4}% of the pixels as PyTorch's whole scene",
            100.0 * agreement
        );
        assert!(
            agreement >= least,
            "tile {tile} overlap {overlap}: {agreement}"
        );
        agreements.push(agreement);
        let right = (0..w * h)
            .filter(|&k| classes.data[k] as usize == parcel_cover(k % w, k / w))
            .count();
        assert!(right as f64 >= 0.99 * (w * h) as f64, "{right} right");
        if let (Some(src), Some(g)) = (&source, gdalinfo(&mask)) {
            assert_eq!(g["size"], serde_json::json!([w, h]));
            assert_eq!(g["geoTransform"], src["geoTransform"]);
            assert!(g["coordinateSystem"]["wkt"]
                .as_str()
                .unwrap()
                .contains("32633"));
        }
    }
    assert!(
        agreements[1] > agreements[2],
        "blending {} against a hard cut {}",
        agreements[1],
        agreements[2]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Batching windows into one submission and cutting the scene into vertical strips change the order of the work,
/// not the result: batch 3, and strips narrower than a window's stride (boundaries inside windows, the windows
/// straddling them run for both strips), give exactly the class map and probabilities of batch 1 in one strip.
#[test]
fn batches_and_strips_should_give_exactly_the_unstriped_class_map() {
    let gpu = gpu_or_skip!();
    let dir = temp_dir("strips");
    let scene = dir.join("scene.tif");
    let (w, h) = (300, 200);
    write_scene(&scene, w, h, Some(0));
    let segmenter = Segmenter::new(gpu, four_band_model()).unwrap();
    let (classes, valid, probs, stats) = tiled_with(&segmenter, &scene, options(64, 16, 1, None));
    assert_eq!(
        stats.strips, 1,
        "the default strip holds 8 windows: this scene is one"
    );
    assert_eq!(stats.windows, stats.grid_windows);
    assert!(probs.iter().all(|p| p.is_finite()));
    for (tile, overlap, batch, strip) in [
        (64, 16, 3, None),
        (64, 16, 3, Some(100)),
        (64, 16, 1, Some(48)),
        (64, 16, 2, Some(256)),
    ] {
        let what = format!("tile {tile} overlap {overlap} batch {batch} strip {strip:?}");
        let (c, v, p, s) = tiled_with(&segmenter, &scene, options(tile, overlap, batch, strip));
        eprintln!(
            "{what}: {} strips, {} windows for {} in the grid",
            s.strips, s.windows, s.grid_windows
        );
        assert_eq!(s.strips, strip.map_or(1, |n| w.div_ceil(n)), "{what}");
        // A boundary inside a window costs that window a second run (the boundary at 256 falls in two).
        assert!(s.strips == 1 || s.windows > s.grid_windows, "{what}");
        assert!(c == classes, "{what}: the class map differs");
        assert!(v == valid, "{what}: the validity differs");
        // The same windows summed in the same order: the same bits.
        assert!(
            p.iter()
                .zip(&probs)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: the probabilities differ"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_window_too_large_for_the_device_should_shrink_to_one_that_fits() {
    let gpu = gpu_or_skip!();
    let segmenter = Segmenter::new(gpu, four_band_model()).unwrap();
    let mut stream = segmenter.stream();
    let (side, note) = fit_window(&segmenter, &mut stream, 1 << 16, 32, BANDS).unwrap();
    let note = note.expect("a note");
    eprintln!("{note}");
    assert!(side < 1 << 16 && side > 32 && side % 4 == 0, "{side}");
    assert!(
        note.contains("65536x65536") && note.contains(&format!("{side}x{side}")),
        "{note}"
    );
    // A window that fits comes back as it is; a tile not above the overlap is refused.
    assert_eq!(
        fit_window(&segmenter, &mut stream, 64, 16, BANDS).unwrap(),
        (64, None)
    );
    assert!(fit_window(&segmenter, &mut stream, 64, 64, BANDS).is_err());
}

#[test]
fn nodata_should_stay_nodata() {
    let gpu = gpu_or_skip!();
    let dir = temp_dir("nodata");
    let scene = dir.join("holes.tif");
    write_scene(&scene, 100, 70, Some(0));
    let segmenter = Segmenter::new(gpu, four_band_model()).unwrap();
    let (_, valid, _) = tiled(&segmenter, &scene, 32, 8, 2);
    for y in 0..70 {
        for x in 0..100 {
            let hole = (x + 2 * y) % 37 == 0 || x < 3;
            assert_eq!(valid[y * 100 + x], !hole, "({x}, {y})");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn atrous(args: &[&str]) -> std::process::Output {
    atrous_with(&[], args)
}

/// The command line with `env` (name, value) set besides the test's environment.
fn atrous_with(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_atrous"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// gdalinfo -json of `path`, or `None` (with a note) where gdalinfo is missing outside CI.
fn gdalinfo(path: &Path) -> Option<serde_json::Value> {
    match Command::new("gdalinfo")
        .arg("-json")
        .arg(path)
        .env("GDAL_PAM_ENABLED", "NO")
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "gdalinfo: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(serde_json::from_slice(&out.stdout).unwrap())
        }
        Err(e) if std::env::var_os("CI").is_some() => panic!("gdalinfo is needed in CI: {e}"),
        Err(e) => {
            eprintln!("skipping the gdalinfo checks: gdalinfo not found ({e})");
            None
        }
    }
}

#[test]
fn cli_should_write_georeferenced_masks_and_probabilities() {
    if common::gpu().is_none() {
        return;
    }
    let out = temp_dir("cli-geo");
    let scene = raster_fixture("u16_nodata.tif");
    let model = smp_4band();
    let o = atrous(&[
        "segment",
        "--model",
        model.to_str().unwrap(),
        "--tile",
        "32",
        "--overlap",
        "8",
        "--probs",
        "--out",
        out.to_str().unwrap(),
        scene.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("megapixels/s") && stdout.contains("6 windows of 32x32"),
        "{stdout}"
    );
    assert_eq!(
        files(&out),
        [
            "u16_nodata.color.png",
            "u16_nodata.mask.tif",
            "u16_nodata.probs.tif"
        ]
    );
    // Read back by atrous: nodata exactly where the scene's is, classes elsewhere, probabilities summing to 1.
    let mut input = Raster::open(&scene).unwrap();
    let mut mask = Raster::open(out.join("u16_nodata.mask.tif")).unwrap();
    let mut probs = Raster::open(out.join("u16_nodata.probs.tif")).unwrap();
    assert_eq!((mask.width(), mask.height(), mask.bands()), (70, 50, 1));
    assert_eq!(mask.sample_type(), SampleType::U8);
    assert_eq!(mask.nodata(), Some(255.0));
    assert_eq!((probs.bands(), probs.sample_type()), (3, SampleType::F32));
    assert_eq!(mask.geo(), input.geo());
    let i = input.read_window(0, 0, 70, 50, &[0]).unwrap();
    let m = mask.read_window(0, 0, 70, 50, &[0]).unwrap();
    let p = probs.read_window(0, 0, 70, 50, &[0, 1, 2]).unwrap();
    for k in 0..70 * 50 {
        assert_eq!(m.valid[k], i.valid[k], "pixel {k}");
        if i.valid[k] {
            let ps = [p.data[k], p.data[3500 + k], p.data[7000 + k]];
            assert!((ps.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            let best = (0..3).max_by(|&a, &b| ps[a].total_cmp(&ps[b])).unwrap();
            assert_eq!(m.data[k] as usize, best);
        }
    }
    // And by GDAL: size, type, CRS, geotransform and nodata as the scene's.
    if let (Some(g), Some(src)) = (gdalinfo(&out.join("u16_nodata.mask.tif")), gdalinfo(&scene)) {
        assert_eq!(g["size"], serde_json::json!([70, 50]));
        assert_eq!(g["geoTransform"], src["geoTransform"]);
        assert!(g["coordinateSystem"]["wkt"]
            .as_str()
            .unwrap()
            .contains("32633"));
        assert_eq!(g["bands"][0]["type"], "Byte");
        assert_eq!(g["bands"][0]["noDataValue"], 255.0);
        let p = gdalinfo(&out.join("u16_nodata.probs.tif")).unwrap();
        assert_eq!(p["bands"].as_array().unwrap().len(), 3);
        assert_eq!(p["bands"][0]["type"], "Float32");
        assert_eq!(p["geoTransform"], src["geoTransform"]);
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// TIFF files given alone are scenes without `--tile` too: the 70 x 50 scene runs as one window (its size rounded
/// up to the model's multiple of 16) and gets its georeferenced mask, not the PNGs of the photo path.
#[test]
fn cli_should_take_tiff_files_as_scenes_without_tile() {
    if common::gpu().is_none() {
        return;
    }
    let out = temp_dir("cli-no-tile");
    let scene = raster_fixture("u16_nodata.tif");
    let o = atrous(&[
        "segment",
        "--model",
        smp_4band().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        scene.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("1 window of 80x64"), "{stdout}");
    assert_eq!(files(&out), ["u16_nodata.color.png", "u16_nodata.mask.tif"]);
    let mask = Raster::open(out.join("u16_nodata.mask.tif")).unwrap();
    assert_eq!((mask.width(), mask.height()), (70, 50));
    assert_eq!(mask.geo(), Raster::open(&scene).unwrap().geo());
    let _ = std::fs::remove_dir_all(&out);
}

/// A scene wider than a strip is written strip by strip (tile columns in any file order): the mask and the
/// probabilities equal those of a run in one strip, and GDAL reads them alike. A strip off the output's tiles is
/// refused.
#[test]
fn cli_strips_should_write_the_same_scene_as_one_strip() {
    if common::gpu().is_none() {
        return;
    }
    let dir = temp_dir("cli-strips");
    let scene = dir.join("wide.tif");
    let (w, h) = (600, 60);
    write_scene(&scene, w, h, Some(0));
    let model = smp_4band();
    let run = |strip: &str| -> (Raster, Raster, PathBuf, String) {
        let out = dir.join(format!("out{strip}"));
        let o = atrous(&[
            "segment",
            "--model",
            model.to_str().unwrap(),
            "--tile",
            "32",
            "--overlap",
            "8",
            "--strip",
            strip,
            "--probs",
            "--out",
            out.to_str().unwrap(),
            scene.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mask = out.join("wide.mask.tif");
        let probs = Raster::open(out.join("wide.probs.tif")).unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).to_string();
        (Raster::open(&mask).unwrap(), probs, mask, stdout)
    };
    let (mut mask1, mut probs1, path1, _) = run("1024");
    let (mut mask3, mut probs3, path3, stdout) = run("256");
    assert!(stdout.contains("in 3 strips"), "{stdout}");
    let read = |r: &mut Raster, bands: &[usize]| r.read_window(0, 0, w, h, bands).unwrap();
    let (a, b) = (read(&mut mask1, &[0]), read(&mut mask3, &[0]));
    assert!(a.data == b.data && a.valid == b.valid, "the masks differ");
    let (a, b) = (read(&mut probs1, &[0, 1, 2]), read(&mut probs3, &[0, 1, 2]));
    assert!(a.data == b.data, "the probabilities differ");
    if let (Some(g1), Some(g3)) = (gdalinfo(&path1), gdalinfo(&path3)) {
        assert_eq!(g3["size"], serde_json::json!([600, 60]));
        assert_eq!(g1["bands"], g3["bands"], "GDAL reads the bands alike");
        // GDAL's checksum of the pixels it decodes: the same in both files.
        let checksum = |p: &Path| {
            let o = Command::new("gdalinfo")
                .arg("-checksum")
                .arg(p)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(o.status.success() && text.contains("Checksum="), "{text}");
            text.lines()
                .filter(|l| l.contains("Checksum="))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(checksum(&path1), checksum(&path3));
    }
    let o = atrous(&[
        "segment",
        "--model",
        model.to_str().unwrap(),
        "--tile",
        "32",
        "--strip",
        "100",
        "--out",
        dir.join("bad").to_str().unwrap(),
        scene.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("--strip 100"),
        "{stderr}"
    );
    assert!(!dir.join("bad").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_shards_should_cover_every_scene_once_and_skip_existing_outputs() {
    if common::gpu().is_none() {
        return;
    }
    let root = temp_dir("cli-shards");
    let scenes = root.join("scenes");
    std::fs::create_dir_all(scenes.join("north")).unwrap();
    let names = ["a", "b", "c", "d", "north/e", "north/f", "g"];
    for n in names {
        std::fs::copy(
            raster_fixture("u16_tiled_deflate.tif"),
            scenes.join(format!("{n}.tif")),
        )
        .unwrap();
    }
    let out = root.join("out");
    let model = smp_4band();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "segment",
            "--model",
            model.to_str().unwrap(),
            "--tile",
            "64",
            "--overlap",
            "16",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(scenes.to_str().unwrap());
        let o = atrous(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut seen = Vec::new();
    for i in 0..3 {
        let stdout = run(&["--shard", &format!("{i}/3")]);
        let done: Vec<String> = stdout
            .lines()
            .filter(|l| l.contains(" -> "))
            .map(|l| l.split(" (").next().unwrap().to_string())
            .collect();
        assert!(!done.is_empty() && done.len() <= 3, "shard {i}: {done:?}");
        seen.extend(done);
    }
    seen.sort();
    let mut want: Vec<String> = names
        .iter()
        .map(|n| {
            scenes
                .join(format!("{n}.tif"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    want.sort();
    assert_eq!(seen, want, "every scene exactly once over the shards");
    let mut masks: Vec<String> = names.iter().map(|n| format!("{n}.mask.tif")).collect();
    masks.extend(names.iter().map(|n| format!("{n}.color.png")));
    masks.sort();
    assert_eq!(files(&out), masks);

    // Everything exists: nothing is done again (outputs untouched); one removed: only it is redone.
    let stamp = |n: &str| std::fs::metadata(out.join(n)).unwrap().modified().unwrap();
    let before = stamp("a.mask.tif");
    let stdout = run(&["--skip-existing"]);
    assert!(!stdout.contains(" -> "), "{stdout}");
    assert_eq!(stamp("a.mask.tif"), before);
    std::fs::remove_file(out.join("north/e.mask.tif")).unwrap();
    let stdout = run(&["--skip-existing"]);
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" -> ")).count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("north/e.tif"), "{stdout}");
    assert!(out.join("north/e.mask.tif").exists());

    // A bad shard is refused.
    let o = atrous(&[
        "segment",
        "--tile",
        "64",
        "--shard",
        "3/3",
        scenes.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shard"));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn cli_should_refuse_bad_scenes_and_options_naming_the_file_leaving_nothing() {
    if common::gpu().is_none() {
        return;
    }
    let root = temp_dir("cli-bad");
    let good = raster_fixture("u16_tiled_deflate.tif");
    let truncated = root.join("truncated.tif");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let bits1 = raster_fixture("bits1.tif");
    let complex = raster_fixture("complex.tif");
    let model = smp_4band();
    let m = model.to_str().unwrap();
    let (g, t, b, c) = (
        good.to_str().unwrap(),
        truncated.to_str().unwrap(),
        bits1.to_str().unwrap(),
        complex.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec![t], "truncated.tif", ""),
        (vec![b], "bits1.tif", ""),
        (vec![c], "complex.tif", ""),
        (
            vec!["--bands", "1,2,3,9", g],
            "u16_tiled_deflate.tif",
            "band 9",
        ),
        (
            vec!["--bands", "1,2,3", g],
            "u16_tiled_deflate.tif",
            "3 bands",
        ),
        (
            vec!["--mean", "1,2,3", g],
            "unet_4band",
            "--mean has 3 values",
        ),
        (
            vec!["--std", "1,2,3,4,5", g],
            "unet_4band",
            "--std has 5 values",
        ),
        (
            vec!["--overlap", "32", g],
            "u16_tiled_deflate.tif",
            "larger than the overlap",
        ),
    ];
    let refuse = |env: &[(&str, &str)], extra: &[&str], file: &str, want: &str| {
        let out = root.join("out");
        let mut args = vec![
            "segment",
            "--model",
            m,
            "--tile",
            "32",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra.iter().copied());
        let o = atrous_with(env, &args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?} succeeded");
        let line = stderr.trim();
        assert_eq!(line.lines().count(), 1, "{extra:?}: one line, got {line}");
        assert!(
            line.contains(file) && line.contains(want),
            "{extra:?}: {line}"
        );
        assert!(files(&out).is_empty(), "{extra:?} left {:?}", files(&out));
    };
    for (extra, file, want) in cases {
        refuse(&[], &extra, file, want);
    }
    // An activation memory limit below what a 32 x 32 window needs: no window fits "the device".
    refuse(
        &[("ATROUS_MAX_MEMORY", "1000")],
        &["--overlap", "8", g],
        "u16_tiled_deflate.tif",
        "fits the device",
    );
    let _ = std::fs::remove_dir_all(&root);
}
