// tests/swap.rs in your project, with afemu as a dev-dependency
// (afemu = { path = "../afemu" }, or a git URL) and tokio with "macros" and "rt-multi-thread".
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn example_com_is_served_and_never_sees_the_error_page() -> anyhow::Result<()> {
    let emu = afemu::Emulator::start().await; // free ports, returns once both accept
    let af = emu.client(); // a logged-in v1 client
    let app = std::path::Path::new("fixtures/apps/hello-v1");
    af.push("blue", app, &["example.com"], Duration::from_secs(30))
        .await?;
    assert_eq!(emu.get("example.com", "/").await.status, 200);
    assert!(emu.journal().default_error_pages("example.com").is_empty());
    emu.shutdown().await;
    Ok(())
}
