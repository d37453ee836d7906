//! The HTTP/1.1 wire work the proxy needs and no more: what a header means to a proxy, how long a
//! message body is (RFC 9112 §6), and where a chunked body ends. Heads are parsed by `httparse`;
//! bodies are never decoded, only measured, so they pass through byte for byte.
//!
//! Everything here is pure and synchronous: the proxy (`proxy.rs`) does the I/O.

use std::fmt::Write as _;

/// The most headers a request or response head may have (hyper's default, and more than any
/// browser sends).
pub(crate) const MAX_HEADERS: usize = 100;

/// The longest request head accepted, in bytes; a longer one gets 431.
pub(crate) const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The longest response head accepted from an app, in bytes; a longer one is a bad gateway.
pub(crate) const MAX_RESPONSE_HEAD: usize = 256 * 1024;

/// The longest chunk-size line (with its extensions) and the most trailer bytes accepted.
const MAX_CHUNK_LINE: u32 = 4096;
const MAX_TRAILERS: u32 = 16 * 1024;

/// What a header is to the proxy. Every header not named here is end-to-end and passes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop headers other than the three above (RFC 9110 §7.6.1, and `Proxy-Connection`).
    HopByHop,
    XForwardedFor,
    XForwardedProto,
    XVcapTrace,
    Cookie,
    SetCookie,
    Expect,
    Other,
}

/// Classifies a header name (case-insensitively): one length switch and at most two comparisons.
pub(crate) fn classify(name: &str) -> Kind {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if is("te") => Kind::HopByHop,
        4 if is("host") => Kind::Host,
        6 if is("cookie") => Kind::Cookie,
        6 if is("expect") => Kind::Expect,
        7 if is("trailer") => Kind::HopByHop,
        7 if is("upgrade") => Kind::HopByHop,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::HopByHop,
        10 if is("set-cookie") => Kind::SetCookie,
        12 if is("x-vcap-trace") => Kind::XVcapTrace,
        14 if is("content-length") => Kind::ContentLength,
        15 if is("x-forwarded-for") => Kind::XForwardedFor,
        16 if is("proxy-connection") => Kind::HopByHop,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        17 if is("x-forwarded-proto") => Kind::XForwardedProto,
        _ => Kind::Other,
    }
}

/// The comma-separated elements of a header value, trimmed, empty ones skipped.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// What the `Connection` headers of a message say.
#[derive(Debug, Default)]
pub(crate) struct ConnectionOptions<'a> {
    pub close: bool,
    pub keep_alive: bool,
    /// Other headers named as hop-by-hop for this message; they are dropped with it.
    pub listed: Vec<&'a [u8]>,
}

impl<'a> ConnectionOptions<'a> {
    pub(crate) fn add(&mut self, value: &'a [u8]) {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                self.listed.push(token);
            }
        }
    }

    /// Whether `name` was listed in a `Connection` header.
    pub(crate) fn lists(&self, name: &str) -> bool {
        !self.listed.is_empty()
            && self
                .listed
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
}

/// Why a message's framing headers are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    #[error("an invalid Content-Length")]
    BadLength,
    #[error("Content-Length values that disagree")]
    ConflictingLengths,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndEncoding,
    #[error("a Transfer-Encoding whose last coding is not chunked")]
    NotChunked,
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    EncodingInHttp10,
}

/// Collects the framing headers of one message.
#[derive(Debug, Default)]
pub(crate) struct FramingHeaders {
    length: Option<u64>,
    bad_length: bool,
    conflicting: bool,
    encoding: bool,
    /// Whether the last coding seen so far is `chunked`.
    chunked_last: bool,
}

impl FramingHeaders {
    pub(crate) fn content_length(&mut self, value: &[u8]) {
        // A list of identical values ("5, 5") is one value (RFC 9110 §8.6).
        let mut any = false;
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            any = true;
            match parse_decimal(token) {
                Some(length) => match self.length {
                    Some(seen) if seen != length => self.conflicting = true,
                    _ => self.length = Some(length),
                },
                None => self.bad_length = true,
            }
        }
        if !any {
            self.bad_length = true;
        }
    }

    pub(crate) fn transfer_encoding(&mut self, value: &[u8]) {
        self.encoding = true;
        if let Some(last) = tokens(value).last() {
            self.chunked_last = last.eq_ignore_ascii_case(b"chunked");
        }
    }

    /// The framing of a request (RFC 9112 §6.3): no body unless it says so.
    pub(crate) fn request(&self, http10: bool) -> Result<Framing, FramingError> {
        if self.encoding && http10 {
            return Err(FramingError::EncodingInHttp10);
        }
        self.framing(Framing::Length(0))
    }

    /// The framing of a response that can have a body: until the close unless it says otherwise.
    pub(crate) fn response(&self) -> Result<Framing, FramingError> {
        self.framing(Framing::UntilClose)
    }

    fn framing(&self, unsaid: Framing) -> Result<Framing, FramingError> {
        if self.encoding {
            return if self.length.is_some() || self.bad_length {
                // Smuggling territory: refused rather than guessed (RFC 9112 §6.3, item 3).
                Err(FramingError::LengthAndEncoding)
            } else if self.chunked_last {
                Ok(Framing::Chunked)
            } else {
                Err(FramingError::NotChunked)
            };
        }
        self.length_framing()
            .map(|length| length.map_or(unsaid, Framing::Length))
    }

    fn length_framing(&self) -> Result<Option<u64>, FramingError> {
        if self.bad_length {
            Err(FramingError::BadLength)
        } else if self.conflicting {
            Err(FramingError::ConflictingLengths)
        } else {
            Ok(self.length)
        }
    }
}

/// A non-empty run of ASCII digits, without overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + u64::from(digit - b'0'))
    })
}

/// Whether a response to `method` with `status` has no body whatever its headers say
/// (RFC 9112 §6.3, items 1 and 2).
pub(crate) fn response_is_bodiless(head_request: bool, status: u16) -> bool {
    head_request || (100..200).contains(&status) || status == 204 || status == 304
}

/// Finds where a chunked body ends, byte by byte across reads, without decoding it: strict about
/// the framing (CRLF line ends, hex sizes that fit in 64 bits, bounded extensions and trailers),
/// since a proxy that is lenient where the app is strict is how requests get smuggled.
#[derive(Clone, Debug)]
pub(crate) struct ChunkScanner {
    state: ChunkState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size { value: u64, digits: u8 },
    Extension { length: u32, value: u64 },
    SizeLf { value: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    TrailerStart { total: u32 },
    TrailerLine { total: u32 },
    TrailerLf { total: u32 },
    EndLf,
    Done,
}

/// A chunked body that breaks the framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a malformed chunked body")]
pub(crate) struct ChunkError;

impl Default for ChunkScanner {
    fn default() -> Self {
        ChunkScanner {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

impl ChunkScanner {
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes the body's bytes at the start of `input`; returns how many belong to the body
    /// (all of `input`, or fewer once the body has ended).
    pub(crate) fn scan(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        use ChunkState::*;
        let mut at = 0;
        while at < input.len() {
            if let Data { left } = self.state {
                // The bulk of a body: skipped in one step.
                let take = left.min((input.len() - at) as u64);
                at += take as usize;
                self.state = if take == left {
                    DataCr
                } else {
                    Data { left: left - take }
                };
                continue;
            }
            let byte = input[at];
            self.state = match self.state {
                Size { value, digits } => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits == 16 {
                            return Err(ChunkError);
                        }
                        let digit = (byte as char).to_digit(16).unwrap_or(0);
                        Size {
                            value: value << 4 | u64::from(digit),
                            digits: digits + 1,
                        }
                    }
                    b';' | b' ' | b'\t' if digits > 0 => Extension { length: 1, value },
                    b'\r' if digits > 0 => SizeLf { value },
                    _ => return Err(ChunkError),
                },
                Extension { length, value } => match byte {
                    b'\r' => SizeLf { value },
                    b'\n' | 0 => return Err(ChunkError),
                    _ if length >= MAX_CHUNK_LINE => return Err(ChunkError),
                    _ => Extension {
                        length: length + 1,
                        value,
                    },
                },
                SizeLf { value } => match byte {
                    b'\n' if value == 0 => TrailerStart { total: 0 },
                    b'\n' => Data { left: value },
                    _ => return Err(ChunkError),
                },
                Data { .. } => unreachable!("handled above"),
                DataCr => match byte {
                    b'\r' => DataLf,
                    _ => return Err(ChunkError),
                },
                DataLf => match byte {
                    b'\n' => Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(ChunkError),
                },
                TrailerStart { total } => match byte {
                    b'\r' => EndLf,
                    b'\n' | 0 => return Err(ChunkError),
                    _ => TrailerLine { total: total + 1 },
                },
                TrailerLine { total } => match byte {
                    b'\r' => TrailerLf { total },
                    b'\n' | 0 => return Err(ChunkError),
                    _ if total >= MAX_TRAILERS => return Err(ChunkError),
                    _ => TrailerLine { total: total + 1 },
                },
                TrailerLf { total } => match byte {
                    b'\n' => TrailerStart { total },
                    _ => return Err(ChunkError),
                },
                EndLf => match byte {
                    b'\n' => {
                        at += 1;
                        self.state = Done;
                        return Ok(at);
                    }
                    _ => return Err(ChunkError),
                },
                Done => return Ok(at),
            };
            at += 1;
        }
        Ok(at)
    }
}

/// Appends `data` to `out` as one chunk (for a body that came delimited by the close and goes to
/// a client whose connection stays open).
pub(crate) fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut size = String::with_capacity(16);
    let _ = write!(size, "{:x}\r\n", data.len());
    out.extend_from_slice(size.as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a body re-chunked with [`push_chunk`].
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends one header line.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The path of a request target, without its query (what the journal records).
pub(crate) fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framing(headers: &[(&str, &str)]) -> FramingHeaders {
        let mut found = FramingHeaders::default();
        for (name, value) in headers {
            match classify(name) {
                Kind::ContentLength => found.content_length(value.as_bytes()),
                Kind::TransferEncoding => found.transfer_encoding(value.as_bytes()),
                _ => {}
            }
        }
        found
    }

    #[test]
    fn headers_are_classified_case_insensitively() {
        assert_eq!(classify("Content-Length"), Kind::ContentLength);
        assert_eq!(classify("TRANSFER-ENCODING"), Kind::TransferEncoding);
        assert_eq!(classify("te"), Kind::HopByHop);
        assert_eq!(classify("Keep-Alive"), Kind::HopByHop);
        assert_eq!(classify("Proxy-Connection"), Kind::HopByHop);
        assert_eq!(classify("x-forwarded-for"), Kind::XForwardedFor);
        assert_eq!(classify("X-Forwarded-Proto"), Kind::XForwardedProto);
        assert_eq!(classify("Expect"), Kind::Expect);
        assert_eq!(classify("hosts"), Kind::Other);
        assert_eq!(classify("x-vcap-tracer"), Kind::Other);
        assert_eq!(classify(""), Kind::Other);
    }

    #[test]
    fn request_framing_follows_rfc_9112() {
        assert_eq!(framing(&[]).request(false), Ok(Framing::Length(0)));
        assert_eq!(
            framing(&[("Content-Length", "12")]).request(false),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing(&[("Content-Length", "5, 5"), ("content-length", "5")]).request(false),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "gzip, Chunked")]).request(false),
            Ok(Framing::Chunked)
        );
        let refused = [
            (vec![("Content-Length", "-1")], FramingError::BadLength),
            (vec![("Content-Length", "+1")], FramingError::BadLength),
            (vec![("Content-Length", "")], FramingError::BadLength),
            (vec![("Content-Length", "1 2")], FramingError::BadLength),
            (
                vec![("Content-Length", "99999999999999999999")],
                FramingError::BadLength,
            ),
            (
                vec![("Content-Length", "1"), ("Content-Length", "2")],
                FramingError::ConflictingLengths,
            ),
            (
                vec![("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                FramingError::LengthAndEncoding,
            ),
            (
                vec![("Transfer-Encoding", "chunked, gzip")],
                FramingError::NotChunked,
            ),
            (
                vec![("Transfer-Encoding", "identity")],
                FramingError::NotChunked,
            ),
        ];
        for (headers, error) in refused {
            assert_eq!(framing(&headers).request(false), Err(error), "{headers:?}");
        }
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")]).request(true),
            Err(FramingError::EncodingInHttp10)
        );
    }

    #[test]
    fn response_framing_defaults_to_the_close() {
        assert_eq!(framing(&[]).response(), Ok(Framing::UntilClose));
        assert_eq!(
            framing(&[("Content-Length", "0")]).response(),
            Ok(Framing::Length(0))
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")]).response(),
            Ok(Framing::Chunked)
        );
        assert!(response_is_bodiless(true, 200));
        assert!(response_is_bodiless(false, 204));
        assert!(response_is_bodiless(false, 304));
        assert!(response_is_bodiless(false, 103));
        assert!(!response_is_bodiless(false, 200));
    }

    #[test]
    fn connection_options_list_the_headers_to_drop() {
        let mut options = ConnectionOptions::default();
        options.add(b"Keep-Alive, te,, X-Private ");
        options.add(b"close");
        assert!(options.keep_alive && options.close);
        assert!(options.lists("TE") && options.lists("x-private"));
        assert!(!options.lists("x-public"));
    }

    fn scan_all(body: &[u8]) -> Result<(usize, bool), ChunkError> {
        let mut scanner = ChunkScanner::default();
        let used = scanner.scan(body)?;
        Ok((used, scanner.is_done()))
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers() {
        let body = b"5;name=x\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        assert_eq!(scan_all(body), Ok((end, true)));
        assert_eq!(scan_all(b"0\r\n\r\n"), Ok((5, true)));
        assert_eq!(scan_all(b"5\r\nhel"), Ok((6, false)));
    }

    #[test]
    fn a_broken_chunked_body_is_refused() {
        for broken in [
            &b"zz\r\n\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\r\r",
            b"11111111111111111\r\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\n\n",
            b";ext\r\n",
        ] {
            assert_eq!(
                scan_all(broken),
                Err(ChunkError),
                "{:?}",
                String::from_utf8_lossy(broken)
            );
        }
        let long_extension = [b"1;".as_slice(), &[b'x'; 5000]].concat();
        assert_eq!(scan_all(&long_extension), Err(ChunkError));
    }

    fn encode(chunks: &[Vec<u8>], trailers: &[(String, String)]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            push_chunk(&mut out, chunk);
        }
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            push_header(&mut out, name, value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        /// However a well-formed chunked body is cut into reads, the scanner finds its exact end
        /// and takes nothing of what follows.
        #[test]
        fn the_end_of_a_chunked_body_is_found_across_any_reads(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..6),
            trailers in prop::collection::vec(("[A-Za-z-]{1,10}", "[ -~]{0,20}"), 0..3),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let body = encode(&chunks, &trailers);
            let mut input = body.clone();
            input.extend_from_slice(b"NEXT REQUEST");
            let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len())).collect();
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut scanner = ChunkScanner::default();
            let (mut from, mut used) = (0, 0);
            for cut in cuts {
                if scanner.is_done() {
                    break;
                }
                used += scanner.scan(&input[from..cut]).unwrap();
                from = cut;
            }
            prop_assert!(scanner.is_done());
            prop_assert_eq!(used, body.len());
        }
    }
}
