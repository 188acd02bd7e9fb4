//! The conv2d kernel harness shared by tests/conv2d.rs and tests/winograd.rs: one conv on the GPU into a poisoned
//! destination (and poisoned scratch buffers), compared with the f64 reference.

use super::*;
use atrous::kernels::conv2d::{self, Path};
use atrous::ops::{Conv2d, Padding2d};
use atrous::reference;

pub struct Case {
    pub input: Shape,
    pub conv: Conv2d,
    pub bias: bool,
    pub batch_norm: bool,
}

pub fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    groups: usize,
) -> Conv2d {
    Conv2d {
        stride: [stride, stride],
        padding: Padding2d::uniform(pad),
        dilation: [dil, dil],
        groups,
        ..Conv2d::new(cin, cout, [k, k])
    }
}

/// Random weights in [-1, 1), with a bias and a batch norm (running variances in [0.2, 2)) when asked.
pub fn weights(rng: &mut SmallRng, p: &Conv2d, bias: bool, batch_norm: bool) -> ConvWeights {
    let c = p.out_channels;
    ConvWeights {
        weight: random_vec(rng, p.weight_shape().iter().product()),
        bias: bias.then(|| random_vec(rng, c)),
        batch_norm: batch_norm.then(|| BatchNorm {
            weight: random_vec(rng, c),
            bias: random_vec(rng, c),
            running_mean: random_vec(rng, c),
            running_var: (0..c).map(|_| rng.random_range(0.2f32..2.0)).collect(),
            eps: 1e-5,
        }),
    }
}

/// Runs one conv on the GPU into a poisoned destination and compares with the reference.
pub fn check(gpu: &atrous::Gpu, name: &str, case: &Case, seed: u64, precision: Precision) {
    check_on(gpu, name, case, seed, None, precision);
}

/// [`check`] on a given kernel path (`None`: the one `conv2d::conv2d` picks); returns the worst error relative to
/// max(1, max |reference|). In f16 the input, residual and destination are rounded to f16 on the host first; the
/// weights are not, so their rounding is part of what the tolerance covers.
pub fn check_on(
    gpu: &atrous::Gpu,
    name: &str,
    case: &Case,
    seed: u64,
    path: Option<Path>,
    precision: Precision,
) -> f32 {
    // One conv at a time: on GL, wgpu gives up after 6 s waiting for the adapter's context, which a parallel
    // test holds while llvmpipe compiles a large tiled pipeline (seconds on a loaded machine, uncached).
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rng(seed);
    let p = &case.conv;
    let x = rounded(precision, &random_tensor(&mut rng, case.input));
    let w = weights(&mut rng, p, case.bias, case.batch_norm);
    let dest = p.output_shape(case.input).unwrap();
    let result_shape = dest.with_c(p.out_channels);
    let residual = p
        .residual
        .then(|| rounded(precision, &random_tensor(&mut rng, result_shape)));
    let mut want = reference::conv2d(p, &x, &w, residual.as_ref()).unwrap();

    let (kernel, gw) = match path {
        None => (
            conv2d::conv2d(gpu, name, p, case.input, precision).unwrap(),
            conv2d::upload_weights(gpu, name, p, &w, precision).unwrap(),
        ),
        Some(path) => (
            conv2d::conv2d_on(gpu, name, p, case.input, path, precision).unwrap(),
            conv2d::upload_weights_for(gpu, name, p, &w, path, precision).unwrap(),
        ),
    };
    let gx = upload_in(gpu, "x", &x, precision);
    // The destination's other channels must survive: start from known values, poison only our channels.
    let mut initial = rounded(precision, &random_tensor(&mut rng, dest));
    let poison = Tensor::new(result_shape, vec![f32::NAN; result_shape.numel()]).unwrap();
    reference::place_channels(&mut initial, &poison, p.out_channel_offset);
    // In place, the destination holds the residual and the residual binding is unused.
    if p.residual_in_place {
        initial = residual.clone().expect("an in-place residual");
    }
    let out = upload_in(gpu, "out", &initial, precision);
    let gres = residual
        .as_ref()
        .filter(|_| !p.residual_in_place)
        .map(|r| upload_in(gpu, "residual", r, precision));
    let res_binding = gres.as_ref().map_or(gpu.placeholder(), |r| r.binding());
    // Split-K's partial sums and Winograd's transformed tiles must all be written: poison the scratch too (all f32).
    let scratch: Vec<_> = kernel
        .scratch_bytes()
        .into_iter()
        .map(|bytes| {
            let words = bytes as usize / 4;
            upload(
                gpu,
                "scratch",
                &Tensor::new(Shape::new(1, 1, 1, words), vec![f32::NAN; words]).unwrap(),
            )
        })
        .collect();
    let scratch: Vec<_> = scratch.iter().map(|s| s.binding()).collect();
    let bound = kernel
        .bind(
            gpu,
            out.binding(),
            [
                gx.binding(),
                gw.weight.as_entire_buffer_binding(),
                gw.bias.as_entire_buffer_binding(),
                res_binding,
            ],
            &scratch,
        )
        .unwrap();
    gpu.run(&bound.iter().collect::<Vec<_>>()).unwrap();
    let got = gpu.read_in(&out, precision).unwrap();
    if dest.c != p.out_channels {
        let mut full = initial.clone();
        reference::place_channels(&mut full, &want, p.out_channel_offset);
        want = full;
    }
    let f16_math = path.map_or(precision == Precision::F16 && gpu.prefers_f16_math(), |p| {
        p.f16_math()
    });
    let tolerance = match f16_math {
        false => tolerance(precision),
        true => F16_MATH_TOLERANCE,
    };
    assert_close_tol(
        &format!("{name} ({precision})"),
        &got.data,
        &want.data,
        tolerance,
    );
    relative_error(&got.data, &want.data)
}

/// max |got - want| / max(1, max |want|).
pub fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
    worst / scale
}
