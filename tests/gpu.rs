//! The GPU context: adapter choice, limits, and errors instead of panics or wgpu aborts.

mod common;

use atrous::gpu::{Dispatch, Kernel, KernelSpec, Precision, Shader};
use atrous::kernels::conv2d;
use atrous::ops::Conv2d;
use atrous::{Error, Gpu, Shape};

#[test]
fn unknown_adapter_should_be_an_error_listing_the_adapters() {
    if common::gpu().is_none() {
        return;
    }
    let err = Gpu::with_adapter(Some("no such adapter 42")).unwrap_err();
    assert!(matches!(err, Error::AdapterNotFound { .. }), "{err}");
    assert!(err.to_string().contains("no such adapter 42"), "{err}");
}

#[test]
fn adapters_should_be_listed_best_first_with_limits() {
    let gpu = gpu_or_skip!();
    let adapters = Gpu::adapters();
    assert!(!adapters.is_empty());
    // The device got the adapter's own limits, not wgpu's defaults.
    let chosen = adapters
        .iter()
        .find(|a| a.info.name == gpu.info().name && a.info.backend == gpu.info().backend);
    let chosen = chosen.expect("the chosen adapter is listed");
    assert_eq!(
        gpu.limits().max_storage_buffer_binding_size,
        chosen.limits.max_storage_buffer_binding_size
    );
    assert_eq!(
        gpu.limits().max_compute_workgroups_per_dimension,
        chosen.limits.max_compute_workgroups_per_dimension
    );
}

#[test]
fn oversized_tensors_should_fail_before_allocating() {
    let gpu = gpu_or_skip!();
    let huge = Shape::new(64, 2048, 1024, 1024);
    let err = gpu.tensor("huge", huge, false).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("huge"), "{err}");
    // The same limit guards kernel construction.
    let p = Conv2d::new(2048, 2048, [1, 1]);
    let err = conv2d::conv2d(&gpu, "big conv", &p, huge, Precision::F32).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn binding_a_too_small_buffer_should_be_an_error() {
    let gpu = gpu_or_skip!();
    let p = Conv2d::new(3, 4, [3, 3]);
    let input = Shape::new(1, 3, 8, 8);
    let kernel = conv2d::conv2d(&gpu, "conv", &p, input, Precision::F32).unwrap();
    let small = gpu.tensor("small", Shape::new(1, 1, 2, 2), false).unwrap();
    let x = gpu.tensor("x", input, false).unwrap();
    let w = gpu.tensor("w", Shape::new(4, 3, 3, 3), false).unwrap();
    let b = gpu.tensor("b", Shape::new(1, 4, 1, 1), false).unwrap();
    let err = kernel.bind(
        &gpu,
        small.binding(),
        [x.binding(), w.binding(), b.binding(), gpu.placeholder()],
        &[],
    );
    let err = err.unwrap_err().to_string();
    assert!(err.contains("output") && err.contains("conv"), "{err}");
    // An output aliasing an input is refused before wgpu sees it.
    let both = gpu.tensor("both", input, false).unwrap();
    let err = kernel.bind(
        &gpu,
        both.binding(),
        [both.binding(), w.binding(), b.binding(), gpu.placeholder()],
        &[],
    );
    assert!(err.unwrap_err().to_string().contains("shares its buffer"));
}

#[test]
fn a_wgpu_validation_error_should_become_an_error() {
    let gpu = gpu_or_skip!();
    let spec = |name, source| KernelSpec {
        label: format!("{name} kernel"),
        shader: Shader {
            name,
            source,
            f16_only: false,
        },
        precision: Precision::F32,
        entry: "main",
        constants: &[],
        uniforms: &[0; 16],
        dispatch: Dispatch::Linear(1),
        outputs: vec![],
        inputs: vec![],
    };
    let err = Kernel::new(&gpu, spec("broken-syntax", "fn main( {")).unwrap_err();
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
    assert!(err.to_string().contains("broken-syntax"), "{err}");
    let err = Kernel::new(
        &gpu,
        spec("no-entry", "@compute @workgroup_size(1) fn other() {}"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("main"), "{err}");
}

#[test]
fn a_context_should_wrap_an_application_device() {
    let gpu = gpu_or_skip!();
    let app = Gpu::from_device(
        gpu.device().clone(),
        gpu.queue().clone(),
        gpu.info().clone(),
    )
    .unwrap();
    let t = common::upload(
        &app,
        "t",
        &atrous::Tensor::new(Shape::new(1, 1, 1, 3), vec![1.0, -2.0, 3.5]).unwrap(),
    );
    assert_eq!(app.read(&t).unwrap().data, vec![1.0, -2.0, 3.5]);
}

/// A device without SHADER_F16 (an application's, or GL's) refuses f16 kernels and plans with an error naming the
/// adapter, before compiling anything.
#[test]
fn f16_on_a_device_without_shader_f16_should_be_an_error() {
    let gpu = gpu_or_skip!();
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let adapter = adapters
        .into_iter()
        .find(|a| {
            a.get_info().name == gpu.info().name && a.get_info().backend == gpu.info().backend
        })
        .expect("the chosen adapter is listed");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let plain = Gpu::from_device(device, queue, adapter.get_info()).unwrap();
    assert!(!plain.supports(Precision::F16) && plain.supports(Precision::F32));
    let p = Conv2d::new(3, 4, [3, 3]);
    let input = Shape::new(1, 3, 8, 8);
    let err = conv2d::conv2d(&plain, "conv", &p, input, Precision::F16).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("SHADER_F16"), "{message}");
    assert!(message.contains(&gpu.info().name), "{message}");
    assert!(conv2d::conv2d(&plain, "conv", &p, input, Precision::F32).is_ok());
}

/// Odd element counts of f16 are padded to the 4 bytes bindings and copies need, and round-trip.
#[test]
fn odd_sized_f16_tensors_should_round_trip() {
    let gpu = gpu_or_skip!(Precision::F16);
    let t = atrous::Tensor::new(Shape::new(1, 1, 1, 3), vec![1.0, -2.0, 3.5]).unwrap();
    let g = gpu.upload_in("t", &t, Precision::F16).unwrap();
    assert_eq!(g.buffer.size(), 8);
    assert_eq!(gpu.read_in(&g, Precision::F16).unwrap().data, t.data);
    // 0.1 is not exact in f16: the nearest f16 comes back.
    let t = atrous::Tensor::new(Shape::new(1, 1, 1, 1), vec![0.1]).unwrap();
    let g = gpu.upload_in("t", &t, Precision::F16).unwrap();
    let back = gpu.read_in(&g, Precision::F16).unwrap().data[0];
    assert_eq!(back, half::f16::from_f32(0.1).to_f32());
    assert!((back - 0.1).abs() < 1e-4);
}

/// A folded weight f16 cannot hold is refused by name rather than uploaded as an infinity.
#[test]
fn a_weight_beyond_f16_range_should_be_refused_by_name() {
    let gpu = gpu_or_skip!(Precision::F16);
    let weights = (vec![1.0, 7.0e4, -2.0], vec![0.0]);
    let err = atrous::kernels::upload_folded(&gpu, "conv9", weights.clone(), Precision::F16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv9") && err.contains("f16"), "{err}");
    assert!(atrous::kernels::upload_folded(&gpu, "conv9", weights, Precision::F32).is_ok());
}
