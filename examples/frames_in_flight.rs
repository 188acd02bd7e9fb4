//! A sequence of frames from textures with one frame in flight, then two: with two streams, the CPU records and
//! submits frame i while the GPU still runs frame i - 1, and the class map of frame i - 1 is read back only then.
//! Prints frames per second for both.
//!
//! cargo run --release --example frames_in_flight -- [FRAMES]
//!
//! On a software adapter (lavapipe) the "GPU" is the same CPU cores, so the gain there is small; on a real GPU the
//! second frame hides the readback and the CPU's recording time.

use atrous::segment::{Frame, FrameReadback, Readback, Region, Request};
use atrous::{Gpu, Model, Segmentation, Segmenter};
use std::sync::Arc;
use std::time::Instant;

/// Polls the device until the readback resolves, without blocking the thread on the whole queue: what a render
/// loop does once per frame.
fn finish(gpu: &Gpu, mut readback: FrameReadback) -> atrous::Result<Segmentation> {
    loop {
        gpu.poll()?;
        if let Some(result) = readback.try_take() {
            return result;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(24);
    let root = env!("CARGO_MANIFEST_DIR");
    let gpu = Arc::new(Gpu::new()?);
    println!("adapter: {}", gpu.describe());
    let segmenter = Segmenter::new(
        gpu.clone(),
        Model::load(format!("{root}/weights/selfie_segmenter.safetensors"))?,
    )?;
    // The "video": the astronaut in a texture, each frame a 384 x 384 window moving across it.
    let photo = atrous::image_io::load_image(std::path::Path::new(&format!(
        "{root}/examples/astronaut.png"
    )))?;
    let texture = gpu.texture_2d(
        "video",
        wgpu::TextureFormat::Rgba8UnormSrgb,
        photo.dimensions(),
        wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
    );
    gpu.queue().write_texture(
        texture.as_image_copy(),
        photo.as_raw(),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(4 * photo.width()),
            rows_per_image: None,
        },
        texture.size(),
    );
    let frame = |i: u32| Frame::Texture {
        texture: &texture,
        region: Some(Region {
            x: (i * 5) % 128,
            y: (i * 3) % 128,
            width: 384,
            height: 384,
        }),
    };
    let request = Request {
        readback: Some(Readback::Classes),
        ..Default::default()
    };
    let mut streams = [segmenter.stream(), segmenter.stream()];
    // Warm up: compile the plan and make each stream's state.
    for stream in &mut streams {
        let readback = stream.submit(frame(0), &request)?.readback.expect("asked");
        finish(&gpu, readback)?;
    }

    let mut labels = 0usize;
    let start = Instant::now();
    for i in 0..frames {
        let readback = streams[0]
            .submit(frame(i), &request)?
            .readback
            .expect("asked");
        labels += finish(&gpu, readback)?
            .classes
            .iter()
            .filter(|&&c| c == 1)
            .count();
    }
    let one = frames as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut previous: Option<FrameReadback> = None;
    for i in 0..frames {
        let readback = streams[(i % 2) as usize]
            .submit(frame(i), &request)?
            .readback
            .expect("asked");
        if let Some(p) = previous.replace(readback) {
            labels += finish(&gpu, p)?.classes.len();
        }
    }
    if let Some(p) = previous {
        labels += finish(&gpu, p)?.classes.len();
    }
    let two = frames as f64 / start.elapsed().as_secs_f64();
    println!("{frames} frames of 384 x 384 ({labels} class labels read back)");
    println!("one frame in flight:  {one:.1} frames/s");
    println!(
        "two frames in flight: {two:.1} frames/s ({:.2}x)",
        two / one
    );
    Ok(())
}
