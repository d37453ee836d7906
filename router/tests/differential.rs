//! Differential property test: random request and response streams, well-formed and then
//! damaged a few bytes at a time, go to the router's framing code and to hyper; the router must
//! find the same messages, or be the stricter of the two (`differential/hyper_reference.rs`,
//! shared with the `differential` fuzz target). Well-formed streams must be accepted whole.

#[path = "differential/hyper_reference.rs"]
mod hyper_reference;

use afemu_router::fuzzing::{Ending, frame_requests, frame_responses};
use proptest::prelude::*;

/// A body and the headers that frame it, as a client or an app writes them.
#[derive(Clone, Debug)]
enum Body {
    None,
    Length(Vec<u8>),
    /// Chunks (with an extension or not) and trailers.
    Chunked(Vec<(Vec<u8>, bool)>, Vec<(String, String)>),
}

fn body() -> impl Strategy<Value = Body> {
    let bytes = prop::collection::vec(any::<u8>(), 1..40);
    prop_oneof![
        Just(Body::None),
        bytes.clone().prop_map(Body::Length),
        (
            prop::collection::vec((bytes, any::<bool>()), 0..4),
            prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,8}", "[ -~]{0,12}"), 0..2),
        )
            .prop_map(|(chunks, trailers)| Body::Chunked(chunks, trailers)),
    ]
}

/// Appends the framing headers, the end of the head, and the body.
fn push_body(out: &mut Vec<u8>, body: &Body, upper_hex: bool) {
    match body {
        Body::None => out.extend_from_slice(b"\r\n"),
        Body::Length(data) => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
        }
        Body::Chunked(chunks, trailers) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for (data, extension) in chunks {
                let size = if upper_hex {
                    format!("{:X}", data.len())
                } else {
                    format!("{:x}", data.len())
                };
                out.extend_from_slice(size.as_bytes());
                if *extension {
                    out.extend_from_slice(b" ;name=\"a value\";flag");
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            for (name, value) in trailers {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[derive(Clone, Debug)]
struct RequestSpec {
    method: &'static str,
    path: String,
    http10: bool,
    close: bool,
    extra: Vec<(String, String)>,
    body: Body,
    upper_hex: bool,
}

fn request() -> impl Strategy<Value = RequestSpec> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
        "/[a-z0-9._~-]{0,8}(/[a-z0-9]{0,4})?(\\?[a-z0-9=&]{0,6})?",
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::collection::vec(("X-[A-Za-z]{1,6}", "[ -~]{0,10}"), 0..3),
        body(),
        any::<bool>(),
    )
        .prop_map(
            |(method, path, http10, close, extra, body, upper_hex)| RequestSpec {
                method,
                path,
                http10,
                close,
                extra,
                // HTTP/1.0 has no chunked bodies.
                body: match body {
                    Body::Chunked(..) if http10 => Body::None,
                    body => body,
                },
                upper_hex,
            },
        )
}

fn write_requests(requests: &[RequestSpec]) -> Vec<u8> {
    let mut out = Vec::new();
    for request in requests {
        let version = if request.http10 { "1.0" } else { "1.1" };
        out.extend_from_slice(
            format!(
                "{} {} HTTP/{version}\r\nHost: a.com\r\n",
                request.method, request.path
            )
            .as_bytes(),
        );
        if request.http10 && !request.close {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        } else if request.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        for (name, value) in &request.extra {
            out.extend_from_slice(format!("{name}: {}\r\n", value.trim()).as_bytes());
        }
        push_body(&mut out, &request.body, request.upper_hex);
    }
    out
}

#[derive(Clone, Debug)]
struct ResponseSpec {
    head_request: bool,
    interim: Option<u16>,
    status: u16,
    http10: bool,
    body: Body,
    upper_hex: bool,
}

fn response() -> impl Strategy<Value = ResponseSpec> {
    (
        any::<bool>(),
        prop::option::weighted(0.2, prop::sample::select(vec![100u16, 102, 103])),
        prop::sample::select(vec![200u16, 201, 204, 301, 304, 404, 500]),
        prop::bool::weighted(0.1),
        body(),
        any::<bool>(),
    )
        .prop_map(
            |(head_request, interim, status, http10, body, upper_hex)| ResponseSpec {
                head_request,
                interim,
                status,
                http10,
                body: match body {
                    // A response with no body by rule announces none here (announcing one is
                    // what the damaged streams try).
                    _ if head_request || status == 204 || status == 304 => Body::None,
                    Body::Chunked(..) if http10 => Body::None,
                    body => body,
                },
                upper_hex,
            },
        )
}

fn write_responses(responses: &[ResponseSpec]) -> Vec<u8> {
    let mut out = Vec::new();
    for response in responses {
        if let Some(interim) = response.interim {
            out.extend_from_slice(
                format!("HTTP/1.1 {interim} Interim\r\nLink: </a>\r\n\r\n").as_bytes(),
            );
        }
        let version = if response.http10 { "1.0" } else { "1.1" };
        out.extend_from_slice(format!("HTTP/{version} {} Status\r\n", response.status).as_bytes());
        if response.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        let body = match &response.body {
            // Without a length the body would run to the close: given one, explicitly empty.
            Body::None
                if !response.head_request && response.status != 204 && response.status != 304 =>
            {
                Body::Length(Vec::new())
            }
            body => body.clone(),
        };
        push_body(&mut out, &body, response.upper_hex);
    }
    out
}

/// A few bytes changed, inserted or removed, from those that framing hangs on.
fn damage() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    let interesting = prop::sample::select(b" \t\r\n:;,\"\\0aF=-\x00\x7f\xff".to_vec());
    prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, interesting), 1..4)
}

fn apply(stream: &mut Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) {
    for (at, kind, byte) in edits {
        if stream.is_empty() {
            return;
        }
        let at = at.index(stream.len());
        match kind {
            0 => stream[at] = *byte,
            1 => stream.insert(at, *byte),
            _ => {
                stream.remove(at);
            }
        }
    }
}

fn accepted_whole(ending: Ending) -> bool {
    matches!(ending, Ending::Clean | Ending::Stopped)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Well-formed pipelines of requests: both find the same requests, and the router takes
    /// them all.
    #[test]
    fn well_formed_requests_are_framed_as_hyper_frames_them(
        requests in prop::collection::vec(request(), 1..4),
    ) {
        let stream = write_requests(&requests);
        let framed = frame_requests(&stream);
        prop_assert!(accepted_whole(framed.1), "{framed:?}\n{}", String::from_utf8_lossy(&stream));
        let checked = hyper_reference::check_requests(&stream);
        prop_assert!(checked.is_ok(), "{}\n{:?}", checked.unwrap_err(), String::from_utf8_lossy(&stream));
    }

    /// The same, damaged: the router never finds a request hyper does not, nor takes a
    /// different one.
    #[test]
    fn damaged_requests_are_refused_or_framed_as_hyper_frames_them(
        requests in prop::collection::vec(request(), 1..4),
        edits in damage(),
    ) {
        let mut stream = write_requests(&requests);
        apply(&mut stream, &edits);
        let checked = hyper_reference::check_requests(&stream);
        prop_assert!(checked.is_ok(), "{}\n{:?}", checked.unwrap_err(), String::from_utf8_lossy(&stream));
    }

    /// Well-formed responses (with interim responses, to HEAD or GET): both find the same
    /// responses, and the router takes them all.
    #[test]
    fn well_formed_responses_are_framed_as_hyper_frames_them(
        responses in prop::collection::vec(response(), 1..4),
    ) {
        let stream = write_responses(&responses);
        let heads: Vec<bool> = responses.iter().map(|r| r.head_request).collect();
        let framed = frame_responses(&stream, &heads);
        prop_assert!(accepted_whole(framed.1), "{framed:?}\n{}", String::from_utf8_lossy(&stream));
        let checked = hyper_reference::check_responses(&stream, &heads);
        prop_assert!(checked.is_ok(), "{}\n{:?}", checked.unwrap_err(), String::from_utf8_lossy(&stream));
    }

    /// The same, damaged.
    #[test]
    fn damaged_responses_are_refused_or_framed_as_hyper_frames_them(
        responses in prop::collection::vec(response(), 1..4),
        edits in damage(),
    ) {
        let mut stream = write_responses(&responses);
        apply(&mut stream, &edits);
        let heads: Vec<bool> = responses.iter().map(|r| r.head_request).collect();
        let checked = hyper_reference::check_responses(&stream, &heads);
        prop_assert!(checked.is_ok(), "{}\n{:?}", checked.unwrap_err(), String::from_utf8_lossy(&stream));
    }
}
