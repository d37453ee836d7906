//! The router's HTTP/1.1 wire work (`afemu_router::fuzzing`): any request head becomes, for the
//! app, one well-formed head with the framing the router measures the body by and no hop-by-hop
//! header; any response head becomes, for the client, one well-formed head whose framing is the
//! one the body is sent in; the chunk scanner finds the same end however a body is cut. The
//! first byte picks the case (and the client's version, the request method, the cut).
#![no_main]

use afemu_router::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => fuzzing::request_head(rest),
        1 => fuzzing::response_head(rest, selector & 0x10 != 0, selector & 0x20 != 0),
        _ => fuzzing::chunked(rest, usize::from(selector) * rest.len() / 256),
    }
});
