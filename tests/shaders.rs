//! Every WGSL kernel parses and validates with naga, no device needed.

#[test]
fn every_shader_validates_with_naga() {
    for shader in siamese_wgpu::shaders::ALL {
        if let Err(message) = siamese_wgpu::shaders::validate(&shader.source()) {
            panic!("shaders/{}.wgsl does not validate:\n{message}", shader.name);
        }
    }
}

#[test]
fn every_shader_file_is_registered() {
    let registered: Vec<&str> = siamese_wgpu::shaders::ALL.iter().map(|s| s.name).collect();
    let snippets = ["common", "activation", "reduce", "metric", "weights", "weights_f16", "residual", "no_residual"];
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            registered.contains(&stem.as_str()) || snippets.contains(&stem.as_str()),
            "shaders/{stem}.wgsl is not in src/shaders.rs ALL"
        );
    }
}

#[test]
fn validation_rejects_a_broken_shader() {
    // The validator must be able to fail, or the test above proves nothing.
    assert!(siamese_wgpu::shaders::validate("fn f() -> f32 { return 1u; }").is_err());
}

#[test]
fn validation_rejects_reserved_words() {
    // wgpu rejects WGSL reserved words such as `layout` at run time; so must the offline check.
    assert!(siamese_wgpu::shaders::validate("fn layout() -> f32 { return 1.0; }").is_err());
}
