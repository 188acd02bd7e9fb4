//! `atrous bench --frame`: frames as a render loop runs them. A texture frame is segmented into the application's
//! soft-mask texture through a stream, one submission per frame and nothing read back; the CPU time to record and
//! submit a frame is what a game's frame budget pays, the latency what the GPU takes.

use super::{load_model, median, parse_size, BenchArgs};
use atrous::segment::{Frame, Mask, Request, Target};
use atrous::{Gpu, Result, Segmenter};
use std::sync::Arc;
use std::time::Instant;

pub fn run(args: &BenchArgs) -> Result<()> {
    let path = args
        .model
        .clone()
        .unwrap_or_else(crate::segment::default_model);
    let model = load_model(&path, args.arch.as_deref())?;
    let [h, w] = match &args.size {
        Some(s) => parse_size(s)?,
        None => [480, 640],
    };
    let gpu = Arc::new(Gpu::new()?);
    let segmenter = Segmenter::with_options(gpu.clone(), model, args.numerics.options())?;
    let size = (w as u32, h as u32);
    use wgpu::TextureUsages as U;
    let frame_texture = gpu.texture_2d(
        "bench frame",
        wgpu::TextureFormat::Rgba8UnormSrgb,
        size,
        U::TEXTURE_BINDING | U::COPY_DST,
    );
    let pixels: Vec<u8> = (0..w * h * 4)
        .map(|i| ((i * 2654435761usize) >> 7) as u8)
        .collect();
    gpu.queue().write_texture(
        frame_texture.as_image_copy(),
        &pixels,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(4 * w as u32),
            rows_per_image: None,
        },
        frame_texture.size(),
    );
    let mask = gpu.texture_2d(
        "bench mask",
        wgpu::TextureFormat::R16Float,
        size,
        U::COPY_DST,
    );
    let request = Request {
        mask: Some(Mask {
            class: segmenter.labels().len() - 1,
            target: Target::Texture(&mask),
        }),
        ..Default::default()
    };
    let frame = Frame::Texture {
        texture: &frame_texture,
        region: None,
    };
    let mut stream = segmenter.stream();
    for _ in 0..args.warmup.max(1) {
        stream.submit(frame, &request)?;
        gpu.wait()?;
    }
    let (mut cpu, mut latency) = (Vec::new(), Vec::new());
    for _ in 0..args.iters.max(1) {
        let start = Instant::now();
        stream.submit(frame, &request)?;
        cpu.push(start.elapsed().as_secs_f64());
        gpu.wait()?;
        latency.push(start.elapsed().as_secs_f64());
    }
    cpu.sort_by(f64::total_cmp);
    latency.sort_by(f64::total_cmp);
    let ms = |v: f64| v * 1e3;
    match args.json {
        true => println!(
            "{}",
            serde_json::json!({
                "model": path.display().to_string(), "adapter": gpu.describe(), "frame": [h, w],
                "record_and_submit_ms": ms(median(&cpu)), "frame_latency_ms": ms(median(&latency)),
                "iters": cpu.len(),
            })
        ),
        false => println!(
            "{} on {}\nframe {w}x{h} from a texture into a soft-mask texture, no readback, median of {}:\n  \
             record + submit (CPU): {:.3} ms\n  frame latency:         {:.2} ms",
            path.display(),
            gpu.describe(),
            cpu.len(),
            ms(median(&cpu)),
            ms(median(&latency)),
        ),
    }
    Ok(())
}
