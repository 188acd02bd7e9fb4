//! Files in and out of `atrous segment` (and `atrous run`): outputs mirror the inputs' tree, same stems are kept
//! apart, no input (nor the model) is ever overwritten, a failed write leaves no partial file, a batch reports each
//! failure and sums them up, and a truncated image is an error naming it.

mod common;

use atrous::image_io::{self, StagedFile};
use image::{ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atrous-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn atrous(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atrous"))
        .args(args)
        .output()
        .unwrap()
}

/// A `width x height` picture (a gradient, different for each `seed`).
fn picture(width: u32, height: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 13) as u8 ^ seed, (y * 17) as u8, seed.wrapping_mul(31)])
    })
}

fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn write_picture(path: &Path, width: u32, height: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let format = ImageFormat::from_path(path).unwrap();
    std::fs::write(path, encode(&picture(width, height, seed), format)).unwrap();
}

/// Every file under `dir`, relative to it, sorted (hidden temporary files included).
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e.path().strip_prefix(dir).unwrap();
            relative.to_str().unwrap().replace('\\', "/")
        })
        .collect();
    names.sort();
    names
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn dimensions(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const SUFFIXES: [&str; 3] = ["mask", "color", "overlay"];

/// `name.{mask,color,overlay}.png` for each name.
fn outputs_of(names: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = names
        .iter()
        .flat_map(|n| SUFFIXES.map(|s| format!("{n}.{s}.png")))
        .collect();
    all.sort();
    all
}

#[test]
fn a_failed_write_should_leave_neither_a_partial_nor_a_temporary_file() {
    let dir = temp_dir("failed-write");
    let path = dir.join("result.png");
    let err = image_io::write_atomically(&path, |w| {
        w.write_all(&[0x89; 4096])?;
        Err(std::io::Error::other("no space left on device (simulated)"))
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("result.png") && err.contains("no space left"),
        "{err}"
    );
    assert!(
        !err.contains(".tmp-"),
        "the message names the final path: {err}"
    );
    assert_eq!(files(&dir), Vec::<String>::new());

    // An earlier file at the path is kept whole.
    std::fs::write(&path, b"earlier result").unwrap();
    image_io::write_atomically(&path, |w| {
        w.write_all(b"half")?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert_eq!(std::fs::read(&path).unwrap(), b"earlier result");
    assert_eq!(files(&dir), ["result.png"]);

    // A path-based writer that fails after writing part of the file.
    let err = StagedFile::write_to_path(&path, |temp| {
        std::fs::write(temp, b"partial").unwrap();
        Err(atrous::Error::File {
            path: temp.to_path_buf(),
            message: "disk full".into(),
        })
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("result.png") && err.contains("disk full"),
        "{err}"
    );
    assert!(!err.contains(".tmp-"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"earlier result");
    assert_eq!(files(&dir), ["result.png"]);

    // A writer that succeeds replaces the file, with nothing left over.
    image_io::write_atomically(&path, |w| w.write_all(b"new result")).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new result");
    assert_eq!(files(&dir), ["result.png"]);

    // A directory that cannot hold the file: one error naming the path, nothing written.
    let missing = dir.join("missing").join("x.png");
    let err = image_io::write_atomically(&missing, |w| w.write_all(b"x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.png"), "{err}");
    assert_eq!(files(&dir), ["result.png"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_staged_file_should_appear_only_when_committed() {
    let dir = temp_dir("staged");
    let path = dir.join("a.png");
    let staged = StagedFile::write(&path, |w| w.write_all(b"complete")).unwrap();
    assert_eq!(staged.path(), path);
    assert!(!path.exists());
    // The temporary file is hidden, in the same directory.
    let pending = files(&dir);
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0].starts_with(".a.png.tmp-"),
        "temporary file {pending:?}"
    );
    drop(staged);
    assert_eq!(files(&dir), Vec::<String>::new());

    let staged = StagedFile::write(&path, |w| w.write_all(b"complete")).unwrap();
    staged.commit().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"complete");
    assert_eq!(files(&dir), ["a.png"]);

    // Renaming over a directory fails: the temporary file goes, the directory stays.
    let squatter = dir.join("b.png");
    std::fs::create_dir(&squatter).unwrap();
    let staged = StagedFile::write(&squatter, |w| w.write_all(b"x")).unwrap();
    let err = staged.commit().unwrap_err().to_string();
    assert!(err.contains("b.png"), "{err}");
    assert!(squatter.is_dir());
    assert_eq!(files(&dir), ["a.png"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_image_should_refuse_a_truncated_image_of_every_format() {
    let dir = temp_dir("truncated");
    let photo = picture(16, 16, 3);
    for (format, extension) in [
        (ImageFormat::Jpeg, "jpg"),
        (ImageFormat::Png, "png"),
        (ImageFormat::Tiff, "tiff"),
        (ImageFormat::WebP, "webp"),
    ] {
        let bytes = encode(&photo, format);
        let whole = dir.join(format!("whole.{extension}"));
        std::fs::write(&whole, &bytes).unwrap();
        let image = image_io::load_image(&whole).unwrap();
        assert_eq!(image.dimensions(), (16, 16));
        let half = dir.join(format!("half.{extension}"));
        std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
        let err = image_io::load_image(&half)
            .expect_err(&format!("a {format:?} cut in half decoded"))
            .to_string();
        assert!(
            err.contains(half.to_str().unwrap()) && !err.contains('\n'),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_jpeg_should_be_complete_only_with_its_end_of_image_marker() {
    let bytes = encode(&picture(24, 16, 5), ImageFormat::Jpeg);
    assert!(image_io::jpeg_is_complete(&bytes));
    for cut in 0..bytes.len() {
        let expected = cut < 2; // Too short to be a JPEG: left to the decoder.
        assert_eq!(
            image_io::jpeg_is_complete(&bytes[..cut]),
            expected,
            "cut at {cut} of {}",
            bytes.len()
        );
    }
    // Trailing data after the end-of-image marker is fine.
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"camera trailer");
    assert!(image_io::jpeg_is_complete(&trailing));

    // An APP1 segment holding a thumbnail's SOS and EOI markers is skipped by its length: cutting the main image's
    // scan is still caught.
    let thumbnail = encode(&picture(4, 4, 1), ImageFormat::Jpeg);
    let mut with_app1 = vec![0xFF, 0xD8, 0xFF, 0xE1];
    with_app1.extend_from_slice(&((thumbnail.len() + 2) as u16).to_be_bytes());
    with_app1.extend_from_slice(&thumbnail);
    with_app1.extend_from_slice(&bytes[2..]);
    assert!(image_io::jpeg_is_complete(&with_app1));
    let header = 6 + thumbnail.len();
    for cut in header..with_app1.len() {
        assert!(!image_io::jpeg_is_complete(&with_app1[..cut]), "cut {cut}");
    }
    // Not a JPEG: the decoder judges.
    assert!(image_io::jpeg_is_complete(b"\x89PNG"));
}

/// `x.png`, `sub/x.png` and `x.jpg` named on the command line: the tree is mirrored under --out, and the two images
/// of one folder sharing the stem `x` keep their extensions. A directory named alone is mirrored from itself, two
/// directories from the folder holding both; the same file named twice is segmented once.
#[test]
fn segment_should_mirror_the_input_tree_and_keep_same_stems_apart() {
    if common::gpu().is_none() {
        return;
    }
    let dir = temp_dir("mirror");
    let photos = dir.join("photos");
    write_picture(&photos.join("x.png"), 16, 16, 1);
    write_picture(&photos.join("sub/x.png"), 20, 12, 2);
    write_picture(&photos.join("x.jpg"), 12, 16, 3);
    let expect_layout = |out: &Path| {
        assert_eq!(
            files(out),
            outputs_of(&["sub/x", "x.jpg", "x.png"]),
            "{}",
            out.display()
        );
        // Each output belongs to its own image (told apart by size).
        assert_eq!(dimensions(&out.join("x.png.mask.png")), (16, 16));
        assert_eq!(dimensions(&out.join("sub/x.overlay.png")), (20, 12));
        assert_eq!(dimensions(&out.join("x.jpg.color.png")), (12, 16));
    };

    let out = dir.join("out-files");
    let named = [
        photos.join("x.png"),
        photos.join("sub/x.png"),
        photos.join("x.jpg"),
        photos.join("sub/../x.png"),
    ];
    let mut args = vec!["segment", "--out", out.to_str().unwrap()];
    args.extend(named.iter().map(|p| p.to_str().unwrap()));
    let run = atrous(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    expect_layout(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" -> ")).count(),
        3,
        "{stdout}"
    );

    // The same again is the same files (deterministic), overwritten in place.
    let again = atrous(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    expect_layout(&out);

    // The directory itself, and the directory through a relative path: the same layout.
    let out = dir.join("out-dir");
    let run = atrous(&[
        "segment",
        "--out",
        out.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    expect_layout(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_atrous"))
        .current_dir(&dir)
        .args(["segment", "--out", "out-relative", "photos/"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    expect_layout(&dir.join("out-relative"));

    // Two directories holding the same names are kept apart by their own names.
    write_picture(&dir.join("more/x.png"), 8, 8, 4);
    let out = dir.join("out-two");
    let run = atrous(&[
        "segment",
        "--out",
        out.to_str().unwrap(),
        photos.to_str().unwrap(),
        dir.join("more").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        files(&out),
        outputs_of(&["more/x", "photos/sub/x", "photos/x.jpg", "photos/x.png"])
    );
    assert_eq!(dimensions(&out.join("more/x.mask.png")), (8, 8));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `a.mask.png` next to `a.png`, with the outputs going into that folder: `a.png` fails naming both and writes
/// nothing; `a.mask.png` is segmented as asked, and kept byte for byte. The model is protected the same way.
#[test]
fn segment_should_never_overwrite_an_input_or_the_model() {
    if common::gpu().is_none() {
        return;
    }
    let dir = temp_dir("clobber");
    let (a, a_mask) = (dir.join("a.png"), dir.join("a.mask.png"));
    write_picture(&a, 16, 16, 1);
    write_picture(&a_mask, 16, 16, 2);
    let before = std::fs::read(&a_mask).unwrap();
    let run = atrous(&[
        "segment",
        "--out",
        dir.to_str().unwrap(),
        a.to_str().unwrap(),
        a_mask.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = stderr(&run);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("atrous: ")
            && lines[0].contains(a.to_str().unwrap())
            && lines[0].contains(a_mask.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(lines[1], "atrous: 1 of 2 images failed", "{err}");
    assert_eq!(std::fs::read(&a_mask).unwrap(), before);
    let mut expected = vec!["a.mask.png".to_string(), "a.png".to_string()];
    expected.extend(outputs_of(&["a.mask"]));
    expected.sort();
    assert_eq!(files(&dir), expected, "nothing written for a.png");

    // A single image whose output is the model: one line, the model untouched.
    let model = dir.join("b.probs.safetensors");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/weights/selfie_segmenter.safetensors"
        ),
        &model,
    )
    .unwrap();
    let model_bytes = std::fs::read(&model).unwrap();
    let b = dir.join("b.png");
    write_picture(&b, 16, 16, 3);
    let run = atrous(&[
        "segment",
        "--model",
        model.to_str().unwrap(),
        "--probs",
        "--out",
        dir.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("b.png") && err.contains("b.probs.safetensors"),
        "{err}"
    );
    assert_eq!(std::fs::read(&model).unwrap(), model_bytes);
    assert!(!dir.join("b.mask.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A JPEG cut at half its length is an error naming it, not a silently padded photo; the rest of the batch goes on
/// and the run ends with a summary.
#[test]
fn segment_should_refuse_a_truncated_jpeg_and_go_on() {
    if common::gpu().is_none() {
        return;
    }
    let dir = temp_dir("jpeg");
    let bytes = encode(&picture(16, 16, 7), ImageFormat::Jpeg);
    let half = dir.join("half.jpg");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let good = dir.join("good.jpg");
    std::fs::write(&good, &bytes).unwrap();
    let out = dir.join("out");
    let run = atrous(&[
        "segment",
        "--out",
        out.to_str().unwrap(),
        half.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = stderr(&run);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("half.jpg") && lines[0].contains("truncated"),
        "{err}"
    );
    assert_eq!(lines[1], "atrous: 1 of 2 images failed");
    assert_eq!(files(&out), outputs_of(&["good"]));

    // Alone: the one line, nothing written.
    let out = dir.join("out-alone");
    let run = atrous(&[
        "segment",
        "--out",
        out.to_str().unwrap(),
        half.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("half.jpg") && err.contains("truncated"),
        "{err}"
    );
    assert!(!out.exists() || files(&out).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A write that fails after the data is written (an output name taken by a directory): the image fails in one line,
/// its temporary files are removed, none of its outputs is renamed into place, and an earlier result stays whole.
/// (A write failing midway, as on a full disk, is the failing writer of the test above: the same clean-up.) `atrous
/// run` likewise.
#[test]
fn a_failed_write_should_leave_no_partial_output() {
    if common::gpu().is_none() {
        return;
    }
    let dir = temp_dir("failing-output");
    let photo = dir.join("photo.png");
    write_picture(&photo, 16, 16, 9);
    let out = dir.join("out");
    std::fs::create_dir_all(out.join("photo.overlay.png")).unwrap();
    std::fs::write(out.join("photo.mask.png"), b"earlier result").unwrap();
    let run = atrous(&[
        "segment",
        "--out",
        out.to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("photo.overlay.png") && err.contains("cannot write"),
        "{err}"
    );
    assert_eq!(files(&out), ["photo.mask.png"]);
    assert_eq!(
        std::fs::read(out.join("photo.mask.png")).unwrap(),
        b"earlier result"
    );

    // `atrous run` with --output naming a directory.
    let (model, input, output) = (
        dir.join("model.safetensors"),
        dir.join("in.safetensors"),
        dir.join("run-out"),
    );
    std::fs::create_dir_all(&output).unwrap();
    let mut b = atrous::graph::GraphBuilder::new();
    let x = b.input("input", 3);
    b.activation("out", &x, atrous::ops::Activation::Relu);
    b.finish(&["out"]).unwrap().save(&model).unwrap();
    let mut tensors = atrous::weights::Weights::new();
    tensors
        .insert("input", vec![1, 3, 8, 8], vec![0.5; 3 * 8 * 8])
        .unwrap();
    tensors.save(&input, Default::default()).unwrap();
    let mut before = files(&dir);
    let run = atrous(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("run-out") && err.contains("cannot write"),
        "{err}"
    );
    assert!(output.is_dir());
    assert_eq!(files(&dir), before);
    // Into a file of that directory it works, leaving only the output.
    let run = atrous(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.join("out.safetensors").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    before.push("run-out/out.safetensors".into());
    before.sort();
    assert_eq!(files(&dir), before);
    std::fs::remove_dir_all(&dir).unwrap();
}
