//! Segment images from Rust: load a model once, segment many images, get class maps, probabilities and labels.
//!
//! cargo run --release --example segment -- [MODEL.safetensors] IMAGE...

use atrous::image_io::load_image;
use atrous::{Gpu, Model, Segmenter};
use std::path::Path;
use std::sync::Arc;

fn main() -> atrous::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let model_path = match args.first() {
        Some(a) if a.ends_with(".safetensors") => args.remove(0),
        _ => concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/weights/selfie_segmenter.safetensors"
        )
        .to_string(),
    };
    if args.is_empty() {
        args.push(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/astronaut.png").to_string());
    }
    let gpu = Arc::new(Gpu::new()?);
    println!("adapter: {}", gpu.describe());
    // Compiled once per image size; weights are uploaded once.
    let segmenter = Segmenter::new(gpu, Model::load(&model_path)?)?;
    for path in &args {
        let photo = load_image(Path::new(path))?;
        let result = segmenter.segment(&photo, true)?;
        let probabilities = result.probabilities.as_ref().expect("asked for");
        println!(
            "{path}: {}x{}, probabilities {}",
            result.width, result.height, probabilities.shape
        );
        for (label, share) in segmenter
            .labels()
            .iter()
            .zip(result.shares(segmenter.labels().len()))
        {
            println!("  {label:<12} {:>6.2}%", 100.0 * share);
        }
    }
    Ok(())
}
