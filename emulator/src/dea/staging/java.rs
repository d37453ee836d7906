//! Java web apps (`java_web`, and `spring`, `grails`, `lift`, which v1 staged as web apps): the
//! exploded WAR run in a servlet container on the instance's port.

use super::StartPlan;
use super::run::Staging;

/// Whether v1 staged this framework as a Java web app.
pub(super) fn is_java(framework: &str) -> bool {
    matches!(framework, "java_web" | "spring" | "grails" | "lift")
}

pub(super) async fn stage(staging: &mut Staging, framework: &str) -> Result<StartPlan, String> {
    let _ = staging;
    Err(format!("{framework} staging is not written yet"))
}

/// A line for the start-up log: whether Java web apps can be staged here.
pub(super) fn describe() -> String {
    "staging: Java web apps unavailable (not written yet)".into()
}
