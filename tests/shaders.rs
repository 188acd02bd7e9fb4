//! Validates every WGSL program with naga. Needs no GPU.

use atrous::kernels::SHADERS;

#[test]
fn every_shader_should_validate_with_naga() {
    for shader in SHADERS {
        let module = naga::front::wgsl::parse_str(shader.source).unwrap_or_else(|e| {
            panic!(
                "shaders/{}.wgsl: {}",
                shader.name,
                e.emit_to_string(shader.source)
            )
        });
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        if let Err(e) = validator.validate(&module) {
            panic!(
                "shaders/{}.wgsl: {}",
                shader.name,
                e.emit_to_string(shader.source)
            );
        }
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
