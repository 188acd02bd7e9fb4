//! The GPU context: adapter choice, limits, and errors instead of panics or wgpu aborts.

mod common;

use atrous::gpu::{Dispatch, Kernel, KernelSpec, Shader};
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
    let err = conv2d::conv2d(&gpu, "big conv", &Conv2d::new(2048, 2048, [1, 1]), huge).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn binding_a_too_small_buffer_should_be_an_error() {
    let gpu = gpu_or_skip!();
    let p = Conv2d::new(3, 4, [3, 3]);
    let input = Shape::new(1, 3, 8, 8);
    let kernel = conv2d::conv2d(&gpu, "conv", &p, input).unwrap();
    let small = gpu.tensor("small", Shape::new(1, 1, 2, 2), false).unwrap();
    let x = gpu.tensor("x", input, false).unwrap();
    let w = gpu.tensor("w", Shape::new(4, 3, 3, 3), false).unwrap();
    let b = gpu.tensor("b", Shape::new(1, 4, 1, 1), false).unwrap();
    let err = kernel.bind(
        &gpu,
        small.binding(),
        [x.binding(), w.binding(), b.binding(), gpu.placeholder()],
        None,
    );
    let err = err.unwrap_err().to_string();
    assert!(err.contains("output") && err.contains("conv"), "{err}");
    // An output aliasing an input is refused before wgpu sees it.
    let both = gpu.tensor("both", input, false).unwrap();
    let err = kernel.bind(
        &gpu,
        both.binding(),
        [both.binding(), w.binding(), b.binding(), gpu.placeholder()],
        None,
    );
    assert!(err.unwrap_err().to_string().contains("shares its buffer"));
}

#[test]
fn a_wgpu_validation_error_should_become_an_error() {
    let gpu = gpu_or_skip!();
    let spec = |name, source| KernelSpec {
        label: format!("{name} kernel"),
        shader: Shader { name, source },
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
    );
    let t = common::upload(
        &app,
        "t",
        &atrous::Tensor::new(Shape::new(1, 1, 1, 3), vec![1.0, -2.0, 3.5]).unwrap(),
    );
    assert_eq!(app.read(&t).unwrap().data, vec![1.0, -2.0, 3.5]);
}
