//! Validates every WGSL program with naga, in both precisions. Needs no GPU.

use atrous::gpu::Precision;
use atrous::kernels::SHADERS;

#[test]
fn every_shader_should_validate_with_naga() {
    for shader in SHADERS {
        for precision in Precision::ALL
            .into_iter()
            .filter(|&p| shader.compiles_in(p))
        {
            let source = shader.source_for(precision);
            let what = format!("shaders/{}.wgsl ({precision})", shader.name);
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&source)));
            // f32 must not need the f16 capability: it runs on adapters without SHADER_F16.
            let capabilities = match precision {
                Precision::F32 => {
                    naga::valid::Capabilities::all() - naga::valid::Capabilities::SHADER_FLOAT16
                }
                Precision::F16 => naga::valid::Capabilities::all(),
            };
            let mut validator =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities);
            if let Err(e) = validator.validate(&module) {
                panic!("{what}: {}", e.emit_to_string(&source));
            }
        }
    }
}

#[test]
fn f16_shaders_should_store_f16() {
    // The f16 variant must really declare f16 storage, not just enable the extension.
    // The class-map encodings store only u32 words.
    for shader in SHADERS.iter().filter(|s| s.name != "encode") {
        let source = shader.source_for(Precision::F16);
        assert!(source.starts_with("enable f16;"), "{}", shader.name);
        // Winograd's f16-math products read and write its f32 scratch and weights only (their transforms, in
        // conv2d_winograd.wgsl, read and write the f16 activations).
        if shader.name == "conv2d_winograd_f16" {
            continue;
        }
        assert!(
            source.contains("array<elem>") || source.contains("array<elem4>"),
            "shaders/{}.wgsl declares no elem storage",
            shader.name
        );
        assert!(
            // Per-channel f32 vectors: conv biases, group-norm scales and shifts, split-K partial sums, per-band
            // means and standard deviations.
            !source.contains("array<f32>")
                || shader.name.starts_with("conv")
                || shader.name == "dw_pointwise"
                || shader.name == "norm"
                || shader.name == "normalize",
            "shaders/{}.wgsl still stores f32 (only per-channel biases, scales and shifts may)",
            shader.name
        );
    }
}

#[test]
fn every_shader_file_should_be_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|f| f.strip_suffix(".wgsl").map(str::to_string))
        .filter(|f| f != "common")
        .collect();
    files.sort();
    let mut registered: Vec<String> = SHADERS.iter().map(|s| s.name.to_string()).collect();
    registered.sort();
    assert_eq!(
        files, registered,
        "shaders/ and kernels::SHADERS must list the same programs"
    );
}

/// The f16-math conv programs multiply in f16 and sum in f32: every fma works on `vec4<f16>` partial sums, each
/// folded into an f32 accumulator; their f32-math twins have no f16 arithmetic at all, and the f16 ones refuse f32.
#[test]
fn f16_math_programs_should_multiply_in_f16_and_accumulate_in_f32() {
    let f16_only: Vec<_> = SHADERS.iter().filter(|s| s.f16_only).collect();
    assert_eq!(f16_only.len(), 3);
    for shader in f16_only {
        assert!(!shader.compiles_in(Precision::F32), "{}", shader.name);
        let half = shader.source_for(Precision::F16);
        let fmas: Vec<&str> = half.lines().filter(|l| l.contains("fma(")).collect();
        assert!(!fmas.is_empty(), "{}", shader.name);
        for line in fmas {
            // h{k}_{j} = fma(w{k}, v{j}, h{k}_{j}): f16 partial sums only.
            assert!(
                line.trim_start().starts_with('h'),
                "{}: {line}",
                shader.name
            );
        }
        assert!(half.contains("vec4<f16>(0.0h)"), "{}", shader.name);
        assert!(half.contains("+= vec4<f32>(h0_0)"), "{}", shader.name);
        let twin_name = shader.name.strip_suffix("_f16").unwrap();
        let twin = SHADERS.iter().find(|s| s.name == twin_name).unwrap();
        let full = twin.source;
        assert!(
            !full.contains("<f16>") && !full.contains("0.0h"),
            "{twin_name}: the f32-math program has f16 arithmetic"
        );
    }
}

/// The generated conv programs (conv2d_tiled*, conv2d_split_k*, conv2d_winograd*) are what
/// scripts/gen-conv2d-tiled.py writes today: the script's `--check` mode compares them without writing. Skipped,
/// saying so, where no `python3` runs.
#[test]
fn generated_shaders_should_match_their_generator() {
    let root = env!("CARGO_MANIFEST_DIR");
    let run = std::process::Command::new("python3")
        .args(["scripts/gen-conv2d-tiled.py", "--check"])
        .current_dir(root)
        .output();
    match run {
        Err(e) => eprintln!("skipped: python3 does not run here ({e})"),
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
