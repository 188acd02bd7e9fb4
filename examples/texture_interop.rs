//! A game-style frame, headless: the application owns the device, renders a scene into a texture (the astronaut as a
//! textured quad over a coloured background), atrous segments that texture in place and writes the person's soft
//! mask into the application's R16Float texture, and a fragment shader composites a replacement background with the
//! mask — all recorded into one encoder and submitted once. Nothing of the frame visits the CPU until the final
//! PNG is written.
//!
//! cargo run --release --example texture_interop -- [OUTPUT.png]

use atrous::gpu::{optional_features, required_features, required_limits};
use atrous::segment::{Frame, Mask, Request, Target};
use atrous::{Gpu, Model, Segmenter};
use std::sync::Arc;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// The render target's format: what a game's colour attachment usually is.
const FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8UnormSrgb;

/// Draws the scene: a full-screen background gradient, then the photo on a quad. Then, in the composite pass, the
/// scene where the mask says "person" over a replacement background elsewhere.
const SHADER: &str = r#"
struct Out { @builtin(position) position: vec4<f32>, @location(0) uv: vec2<f32> }

// A quad from its corners `lo`..`hi` in clip space, two triangles, six vertices.
fn quad(i: u32, lo: vec2<f32>, hi: vec2<f32>) -> Out {
    var corners = array<vec2<f32>, 6>(vec2(0.0, 0.0), vec2(1.0, 0.0), vec2(0.0, 1.0),
                                      vec2(0.0, 1.0), vec2(1.0, 0.0), vec2(1.0, 1.0));
    let c = corners[i];
    var out: Out;
    out.position = vec4(mix(lo, hi, c), 0.0, 1.0);
    out.uv = vec2(c.x, 1.0 - c.y);
    return out;
}

@vertex fn full(@builtin(vertex_index) i: u32) -> Out { return quad(i, vec2(-1.0), vec2(1.0)); }
@vertex fn photo(@builtin(vertex_index) i: u32) -> Out { return quad(i, vec2(-0.55, -0.8), vec2(0.45, 0.95)); }

@group(0) @binding(0) var image: texture_2d<f32>;
@group(0) @binding(1) var linear: sampler;
@group(0) @binding(2) var mask: texture_2d<f32>;

@fragment fn background(in: Out) -> @location(0) vec4<f32> {
    return vec4(mix(vec3(0.85, 0.55, 0.2), vec3(0.2, 0.35, 0.6), in.uv.y), 1.0);
}

@fragment fn textured(in: Out) -> @location(0) vec4<f32> {
    return textureSample(image, linear, in.uv);
}

// The scene where the person is, a checkerboard elsewhere, blended by the soft mask.
@fragment fn composite(in: Out) -> @location(0) vec4<f32> {
    let scene = textureSample(image, linear, in.uv);
    let p = textureSample(mask, linear, in.uv).r;
    let cell = (u32(in.position.x) / 32u + u32(in.position.y) / 32u) % 2u;
    let replacement = select(vec4(0.1, 0.6, 0.3, 1.0), vec4(0.9, 0.9, 0.95, 1.0), cell == 0u);
    return mix(replacement, scene, p);
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let output = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "texture_interop.png".into());
    let root = env!("CARGO_MANIFEST_DIR");

    // The application's device, created with what atrous says it needs.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("application"),
        required_features: required_features() | (optional_features() & adapter.features()),
        required_limits: required_limits(&adapter),
        ..Default::default()
    }))?;
    let gpu = Arc::new(Gpu::from_device(
        device.clone(),
        queue.clone(),
        adapter.get_info(),
    )?);
    println!("adapter: {}", gpu.describe());
    let model = Model::load(format!("{root}/weights/selfie_segmenter.safetensors"))?;
    let segmenter = Segmenter::new(gpu.clone(), model)?;
    let mut stream = segmenter.stream();

    // The application's resources: the photo, the render target, the mask, the composited frame.
    use wgpu::TextureUsages as U;
    let photo = atrous::image_io::load_image(std::path::Path::new(&format!(
        "{root}/examples/astronaut.png"
    )))?;
    let photo_texture = gpu.texture_2d(
        "photo",
        FORMAT,
        photo.dimensions(),
        U::TEXTURE_BINDING | U::COPY_DST,
    );
    queue.write_texture(
        photo_texture.as_image_copy(),
        photo.as_raw(),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(4 * photo.width()),
            rows_per_image: None,
        },
        photo_texture.size(),
    );
    let size = (WIDTH, HEIGHT);
    let scene = gpu.texture_2d(
        "scene",
        FORMAT,
        size,
        U::RENDER_ATTACHMENT | U::TEXTURE_BINDING,
    );
    let mask = gpu.texture_2d(
        "mask",
        wgpu::TextureFormat::R16Float,
        size,
        U::COPY_DST | U::TEXTURE_BINDING,
    );
    let frame = gpu.texture_2d("frame", FORMAT, size, U::RENDER_ATTACHMENT | U::COPY_SRC);

    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("example"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let pipeline = |vertex: &str, fragment: &str| {
        device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some(fragment),
            layout: None,
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some(vertex),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some(fragment),
                compilation_options: Default::default(),
                targets: &[Some(FORMAT.into())],
            }),
            primitive: Default::default(),
            depth_stencil: None,
            multisample: Default::default(),
            multiview_mask: None,
            cache: None,
        })
    };
    let background = pipeline("full", "background");
    let textured = pipeline("photo", "textured");
    let composite = pipeline("full", "composite");
    let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
        mag_filter: wgpu::FilterMode::Linear,
        min_filter: wgpu::FilterMode::Linear,
        ..Default::default()
    });
    let view = |t: &wgpu::Texture| t.create_view(&Default::default());
    let bind = |pipeline: &wgpu::RenderPipeline, image: &wgpu::Texture, with_mask: bool| {
        let (image, mask) = (view(image), view(&mask));
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(&image),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::Sampler(&sampler),
            },
        ];
        if with_mask {
            entries.push(wgpu::BindGroupEntry {
                binding: 2,
                resource: wgpu::BindingResource::TextureView(&mask),
            });
        }
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    };
    let photo_group = bind(&textured, &photo_texture, false);
    let scene_group = bind(&composite, &scene, true);

    // One frame: render, segment, composite, in one encoder and one submission.
    let mut encoder = device.create_command_encoder(&Default::default());
    let pass = |encoder: &mut wgpu::CommandEncoder,
                target: &wgpu::Texture,
                draws: &[(&wgpu::RenderPipeline, Option<&wgpu::BindGroup>)]| {
        let target = view(target);
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: None,
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &target,
                depth_slice: None,
                resolve_target: None,
                ops: Default::default(),
            })],
            ..Default::default()
        });
        for (pipeline, group) in draws {
            pass.set_pipeline(pipeline);
            if let Some(group) = group {
                pass.set_bind_group(0, *group, &[]);
            }
            pass.draw(0..6, 0..1);
        }
    };
    pass(
        &mut encoder,
        &scene,
        &[(&background, None), (&textured, Some(&photo_group))],
    );
    let request = Request {
        mask: Some(Mask {
            class: 1,
            target: Target::Texture(&mask),
        }),
        ..Default::default()
    };
    let recorded = stream.record(
        &mut encoder,
        Frame::Texture {
            texture: &scene,
            region: None,
        },
        &request,
    )?;
    pass(&mut encoder, &frame, &[(&composite, Some(&scene_group))]);
    queue.submit([encoder.finish()]);
    assert!(recorded.submitted().is_none(), "no readback was asked for");

    // Only now does anything come back to the host: the finished frame, for the PNG.
    let row = (4 * WIDTH).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let readback = gpu.staging_buffer("frame", (row * HEIGHT) as u64)?;
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        frame.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: None,
            },
        },
        frame.size(),
    );
    queue.submit([encoder.finish()]);
    let bytes = gpu.read_mapped(&readback, (row * HEIGHT) as u64)?;
    let pixels: Vec<u8> = bytes
        .chunks(row as usize)
        .flat_map(|r| r[..4 * WIDTH as usize].to_vec())
        .collect();
    image::RgbaImage::from_raw(WIDTH, HEIGHT, pixels)
        .expect("the frame's size")
        .save(&output)?;
    println!("wrote {output}: the scene with the background replaced where the mask says it is not a person");
    Ok(())
}
