//! The one timeline drawing of afemu (`timeline.js`, run in the browser): the dashboard's charts
//! and the timeline of `afemu rehearse --html` are drawn by the same code.

/// The drawing, as JavaScript: `afemuTimeline(model)` returns an SVG element.
pub(crate) const TIMELINE_JS: &str = include_str!("timeline.js");
