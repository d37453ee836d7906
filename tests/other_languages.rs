//! A test written in another language than Rust: `tests/admin_api.py` drives `afemu serve` with
//! only HTTP and the `/_afemu/` endpoints (reset, load a state fixture, read the journal), as a
//! test suite in any language would.

#[test]
fn a_python_test_suite_can_use_afemu_serve() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new("python3")
        .arg(root.join("tests/admin_api.py"))
        .arg(env!("CARGO_BIN_EXE_afemu"))
        .arg(root.join("fixtures/states/example.json"))
        .output()
        .expect("python3 runs (.ci/run installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "ok");
}
