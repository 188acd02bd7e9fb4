//! After the first frame of a kind, a frame allocates nothing on the GPU. Alone in its test binary: wgpu's counters
//! of live objects are global to the process, so no other test may run beside it.

mod common;

use atrous::gpu::Gpu;
use atrous::segment::{Frame, Mask, Readback, Region, Request, Target};
use common::*;
use wgpu::{TextureFormat as F, TextureUsages as U};

/// After the first frame of a kind, a frame creates no buffer, texture, view, bind group or pipeline: atrous's own
/// creation counts and wgpu's live-object counters stay put over frames with moving regions and readbacks.
#[test]
fn a_frame_should_allocate_nothing_after_the_first() {
    let gpu = gpu_or_skip!();
    let segmenter = segmenter(gpu.clone(), 4);
    let image = photo(25, 64, 48);
    let texture = frame_texture(&gpu, &image, F::Bgra8UnormSrgb);
    let mask = target_texture(&gpu, F::R16Float, 45, 37, U::COPY_DST);
    let colours = target_texture(&gpu, F::Rgba8Unorm, 45, 37, U::COPY_DST);
    let mut stream = segmenter.stream();
    let mut run = |i: u32| {
        let frame = Frame::Texture {
            texture: &texture,
            region: Some(Region {
                x: i % 7,
                y: i % 5,
                width: 45,
                height: 37,
            }),
        };
        let request = Request {
            colours: Some(Target::Texture(&colours)),
            mask: Some(Mask {
                class: 1,
                target: Target::Texture(&mask),
            }),
            readback: Some(Readback::Classes),
            ..Default::default()
        };
        let readback = stream.submit(frame, &request).unwrap().readback.unwrap();
        drive(readback, &gpu).unwrap()
    };
    run(0);
    gpu.wait().unwrap();
    let counters = |gpu: &Gpu| {
        let hal = gpu.device().get_internal_counters().hal;
        [
            hal.buffers.read(),
            hal.textures.read(),
            hal.texture_views.read(),
            hal.bind_groups.read(),
            hal.compute_pipelines.read(),
            hal.shader_modules.read(),
        ]
    };
    let (created, live) = (gpu.creations(), counters(&gpu));
    for i in 1..8 {
        let result = run(i);
        assert_eq!(result.classes.len(), 45 * 37);
    }
    gpu.wait().unwrap();
    assert_eq!(
        gpu.creations(),
        created,
        "atrous created objects for a frame"
    );
    assert_eq!(
        counters(&gpu),
        live,
        "live wgpu objects changed over frames"
    );
}
