//! Differential fuzzing of the router's HTTP/1.1 framing against hyper's: the same byte stream,
//! as a client sends it (requests) or as an app answers (responses), goes to both, and the
//! router must find the same messages or refuse where hyper refuses (the rules are in
//! `router/tests/differential/hyper_reference.rs`, shared with the property test).
//!
//! Input: the first byte chooses; even, the rest is requests; odd, the rest is the responses to
//! seven requests, each HEAD where the first byte's bits 1 to 7 say so.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../router/tests/differential/hyper_reference.rs"]
mod hyper_reference;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, stream)) = data.split_first() else {
        return;
    };
    let checked = if choice & 1 == 0 {
        hyper_reference::check_requests(stream)
    } else {
        let head_requests: Vec<bool> = (1..8).map(|bit| choice >> bit & 1 == 1).collect();
        hyper_reference::check_responses(stream, &head_requests)
    };
    if let Err(difference) = checked {
        panic!("the router and hyper disagree: {difference}");
    }
});
