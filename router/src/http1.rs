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
    /// `chunked,` or `gzip,,chunked`: RFC 9110 §5.6.1 lets a recipient skip empty elements, but
    /// hyper (and so apps built on it) refuses them; a proxy more lenient than the app behind
    /// it is how requests get smuggled, so the router refuses them too (found by the
    /// differential test).
    #[error("a Transfer-Encoding list with an empty element")]
    EmptyCoding,
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
    /// A `Transfer-Encoding` had an empty list element.
    empty_coding: bool,
}

impl FramingHeaders {
    /// A request's `Content-Length`: one value per header. A list ("5, 5") is refused, as
    /// hyper's server and nginx refuse it (RFC 9110 §8.6 lets a recipient do either; found by
    /// the differential fuzz target); the same value in two headers is one value, forwarded
    /// once.
    pub(crate) fn request_content_length(&mut self, value: &[u8]) {
        if value.contains(&b',') {
            self.bad_length = true;
        } else {
            self.content_length(value);
        }
    }

    /// A response's `Content-Length`, where a list of identical values is one value, as hyper's
    /// client has it.
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
        self.empty_coding |= value
            .split(|&b| b == b',')
            .any(|element| element.trim_ascii().is_empty());
        if let Some(last) = tokens(value).last() {
            self.chunked_last = last.eq_ignore_ascii_case(b"chunked");
        }
    }

    /// The one length the `Content-Length` headers agree on, when they are valid and agree.
    pub(crate) fn length(&self) -> Option<u64> {
        self.length_framing().ok().flatten()
    }

    /// Whether the headers announce a body (a length above zero, or a transfer coding).
    pub(crate) fn announces_body(&self) -> bool {
        self.encoding || self.length.is_some_and(|length| length > 0)
    }

    /// The framing of a request (RFC 9112 §6.3): no body unless it says so.
    pub(crate) fn request(&self, http10: bool) -> Result<Framing, FramingError> {
        if self.encoding && http10 {
            return Err(FramingError::EncodingInHttp10);
        }
        self.framing(Framing::Length(0))
    }

    /// The framing of a response that can have a body: until the close unless it says otherwise.
    /// A `Transfer-Encoding` in an HTTP/1.0 response is faulty framing (RFC 9112 §6.1), as in a
    /// request (found by the differential test: hyper refuses it, the router took it).
    pub(crate) fn response(&self, http10: bool) -> Result<Framing, FramingError> {
        if self.encoding && http10 {
            return Err(FramingError::EncodingInHttp10);
        }
        self.framing(Framing::UntilClose)
    }

    fn framing(&self, unsaid: Framing) -> Result<Framing, FramingError> {
        if self.encoding {
            return if self.length.is_some() || self.bad_length {
                // Smuggling territory: refused rather than guessed (RFC 9112 §6.3, item 3).
                Err(FramingError::LengthAndEncoding)
            } else if self.empty_coding {
                Err(FramingError::EmptyCoding)
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
/// the framing as RFC 9112 §7.1 has it (CRLF line ends; hex sizes that fit in 64 bits; white
/// space after a size only before an extension; extensions of tokens and quoted strings;
/// trailer fields of a name, a colon and visible text; no line folding), with the chunk-size
/// line and the trailer section bounded counting every byte, since a proxy that is lenient
/// where the app is strict is how requests get smuggled.
#[derive(Clone, Debug)]
pub(crate) struct ChunkScanner {
    state: ChunkState,
}

/// Where in a chunked body the scanner is. `line` counts the bytes of the current chunk-size
/// line (for [`MAX_CHUNK_LINE`]) and `total` those of the trailer section (for [`MAX_TRAILERS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size {
        value: u64,
        digits: u8,
    },
    /// White space after the size: only an extension may follow (`BWS ";"`).
    SizeSpace {
        value: u64,
        line: u32,
    },
    /// After `;` (or white space before a name).
    ExtensionStart {
        value: u64,
        line: u32,
    },
    ExtensionName {
        value: u64,
        line: u32,
    },
    /// White space after a name: `=`, `;` or the line end may follow.
    ExtensionNameSpace {
        value: u64,
        line: u32,
    },
    /// After `=` (or white space before the value).
    ExtensionValueStart {
        value: u64,
        line: u32,
    },
    ExtensionToken {
        value: u64,
        line: u32,
    },
    ExtensionQuoted {
        value: u64,
        line: u32,
    },
    ExtensionQuotedPair {
        value: u64,
        line: u32,
    },
    /// After a value: white space, `;` or the line end.
    ExtensionValueEnd {
        value: u64,
        line: u32,
    },
    SizeLf {
        value: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    TrailerStart {
        total: u32,
    },
    TrailerName {
        total: u32,
    },
    TrailerValue {
        total: u32,
    },
    TrailerLf {
        total: u32,
    },
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

/// A token character (RFC 9110 §5.6.2): what names and unquoted values are made of.
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A byte of a field value: visible ASCII, white space, or obs-text (RFC 9110 §5.5).
fn is_field_value_byte(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || (0x21..=0x7e).contains(&byte) || byte >= 0x80
}

/// A byte of a quoted string's text (qdtext, RFC 9110 §5.6.4), or after a backslash.
fn is_qdtext(byte: u8) -> bool {
    is_field_value_byte(byte) && byte != b'"' && byte != b'\\'
}

impl ChunkScanner {
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes the body's bytes at the start of `input`; returns how many belong to the body
    /// (all of `input`, or fewer once the body has ended).
    pub(crate) fn scan(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        self.scan_with(input, |_| {})
    }

    /// [`scan`](Self::scan), handing each run of chunk data (the decoded body) to `data`.
    pub(crate) fn scan_with(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        use ChunkState::*;
        let mut at = 0;
        while at < input.len() {
            if let Data { left } = self.state {
                // The bulk of a body: skipped in one step.
                let take = left.min((input.len() - at) as u64);
                data(&input[at..at + take as usize]);
                at += take as usize;
                self.state = if take == left {
                    DataCr
                } else {
                    Data { left: left - take }
                };
                continue;
            }
            let byte = input[at];
            // The chunk-size line is bounded as a whole, extensions included.
            let next = |line: u32| {
                if line >= MAX_CHUNK_LINE {
                    Err(ChunkError)
                } else {
                    Ok(line + 1)
                }
            };
            let space = byte == b' ' || byte == b'\t';
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
                    b';' if digits > 0 => ExtensionStart {
                        value,
                        line: u32::from(digits) + 1,
                    },
                    _ if space && digits > 0 => SizeSpace {
                        value,
                        line: u32::from(digits) + 1,
                    },
                    b'\r' if digits > 0 => SizeLf { value },
                    _ => return Err(ChunkError),
                },
                SizeSpace { value, line } => match byte {
                    _ if space => SizeSpace {
                        value,
                        line: next(line)?,
                    },
                    b';' => ExtensionStart {
                        value,
                        line: next(line)?,
                    },
                    _ => return Err(ChunkError),
                },
                ExtensionStart { value, line } => match byte {
                    _ if space => ExtensionStart {
                        value,
                        line: next(line)?,
                    },
                    _ if is_tchar(byte) => ExtensionName {
                        value,
                        line: next(line)?,
                    },
                    _ => return Err(ChunkError),
                },
                ExtensionName { value, line } | ExtensionNameSpace { value, line } => {
                    let in_name = matches!(self.state, ExtensionName { .. });
                    match byte {
                        _ if in_name && is_tchar(byte) => ExtensionName {
                            value,
                            line: next(line)?,
                        },
                        _ if space => ExtensionNameSpace {
                            value,
                            line: next(line)?,
                        },
                        b'=' => ExtensionValueStart {
                            value,
                            line: next(line)?,
                        },
                        b';' => ExtensionStart {
                            value,
                            line: next(line)?,
                        },
                        b'\r' => SizeLf { value },
                        _ => return Err(ChunkError),
                    }
                }
                ExtensionValueStart { value, line } => match byte {
                    _ if space => ExtensionValueStart {
                        value,
                        line: next(line)?,
                    },
                    b'"' => ExtensionQuoted {
                        value,
                        line: next(line)?,
                    },
                    _ if is_tchar(byte) => ExtensionToken {
                        value,
                        line: next(line)?,
                    },
                    _ => return Err(ChunkError),
                },
                ExtensionToken { value, line } => match byte {
                    _ if is_tchar(byte) => ExtensionToken {
                        value,
                        line: next(line)?,
                    },
                    _ if space => ExtensionValueEnd {
                        value,
                        line: next(line)?,
                    },
                    b';' => ExtensionStart {
                        value,
                        line: next(line)?,
                    },
                    b'\r' => SizeLf { value },
                    _ => return Err(ChunkError),
                },
                ExtensionQuoted { value, line } => match byte {
                    b'"' => ExtensionValueEnd {
                        value,
                        line: next(line)?,
                    },
                    b'\\' => ExtensionQuotedPair {
                        value,
                        line: next(line)?,
                    },
                    _ if is_qdtext(byte) => ExtensionQuoted {
                        value,
                        line: next(line)?,
                    },
                    _ => return Err(ChunkError),
                },
                ExtensionQuotedPair { value, line } => match byte {
                    _ if is_field_value_byte(byte) => ExtensionQuoted {
                        value,
                        line: next(line)?,
                    },
                    _ => return Err(ChunkError),
                },
                ExtensionValueEnd { value, line } => match byte {
                    _ if space => ExtensionValueEnd {
                        value,
                        line: next(line)?,
                    },
                    b';' => ExtensionStart {
                        value,
                        line: next(line)?,
                    },
                    b'\r' => SizeLf { value },
                    _ => return Err(ChunkError),
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
                // Every byte of the trailer section counts, line ends included, checked at
                // each byte, so that no shape of line gets past the limit.
                TrailerStart { total }
                | TrailerName { total }
                | TrailerValue { total }
                | TrailerLf { total }
                    if total >= MAX_TRAILERS =>
                {
                    return Err(ChunkError);
                }
                TrailerStart { total } => match byte {
                    b'\r' => EndLf,
                    // A name, never white space (obsolete line folding) or an empty name.
                    _ if is_tchar(byte) => TrailerName { total: total + 1 },
                    _ => return Err(ChunkError),
                },
                TrailerName { total } => match byte {
                    _ if is_tchar(byte) => TrailerName { total: total + 1 },
                    b':' => TrailerValue { total: total + 1 },
                    _ => return Err(ChunkError),
                },
                TrailerValue { total } => match byte {
                    b'\r' => TrailerLf { total: total + 1 },
                    _ if is_field_value_byte(byte) => TrailerValue { total: total + 1 },
                    _ => return Err(ChunkError),
                },
                TrailerLf { total } => match byte {
                    b'\n' => TrailerStart { total: total + 1 },
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

/// Whether a head that had `scanned` bytes without ending may end in `buffer` now: whether the
/// bytes from just before `scanned` hold a line end followed by an empty line (as `httparse`
/// accepts it, CRLF or a bare LF). A head that arrives in pieces is then parsed once it may be
/// complete, not once per read: a head trickled a byte at a time costs linear time, not
/// quadratic.
pub(crate) fn head_may_end(buffer: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(2);
    buffer
        .get(from..)
        .unwrap_or_default()
        .windows(2)
        .any(|pair| pair[0] == b'\n' && (pair[1] == b'\n' || pair[1] == b'\r'))
}

/// Whether a `Host` value (or an absolute target's authority) is a host and an optional port
/// and nothing else (RFC 9112 §3.2, RFC 3986 §3.2.2): a registered name of unreserved
/// characters, percent-escapes and sub-delimiters, or a bracketed IP literal, then `:` and
/// digits. What the router routes by must be what the app is told, so `a.com:80@b.com` or
/// `a.com/../x` (which route to `a.com`) are refused rather than passed on.
pub(crate) fn is_host_and_port(value: &str) -> bool {
    let bytes = value.as_bytes();
    let (host, port) = if bytes.first() == Some(&b'[') {
        let Some(end) = value.find(']') else {
            return false;
        };
        let literal = &bytes[1..end];
        let literal_ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b":.vV".contains(&b) || is_sub_delim(b));
        if !literal_ok {
            return false;
        }
        (&bytes[..=end], &bytes[end + 1..])
    } else {
        match value.find(':') {
            Some(colon) => (&bytes[..colon], &bytes[colon..]),
            None => (bytes, &b""[..]),
        }
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    let reg_name_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b) || is_sub_delim(b)));
    port_ok && reg_name_ok
}

fn is_sub_delim(byte: u8) -> bool {
    b"!$&'()*+,;=".contains(&byte)
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

/// Appends `Content-Length: length`, formatted without an allocation.
pub(crate) fn push_content_length(out: &mut Vec<u8>, length: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut left = length;
    loop {
        at -= 1;
        digits[at] = b'0' + (left % 10) as u8;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    push_header(out, "Content-Length", &digits[at..]);
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
        framing_as(headers, FramingHeaders::content_length)
    }

    fn request_framing(headers: &[(&str, &str)]) -> FramingHeaders {
        framing_as(headers, FramingHeaders::request_content_length)
    }

    fn framing_as(
        headers: &[(&str, &str)],
        content_length: fn(&mut FramingHeaders, &[u8]),
    ) -> FramingHeaders {
        let mut found = FramingHeaders::default();
        for (name, value) in headers {
            match classify(name) {
                Kind::ContentLength => content_length(&mut found, value.as_bytes()),
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
        assert_eq!(request_framing(&[]).request(false), Ok(Framing::Length(0)));
        assert_eq!(
            request_framing(&[("Content-Length", "12")]).request(false),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            request_framing(&[("Content-Length", "5"), ("content-length", "5")]).request(false),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            request_framing(&[("Content-Length", "5, 5")]).request(false),
            Err(FramingError::BadLength)
        );
        assert_eq!(
            framing(&[("Content-Length", "5, 5")]).response(false),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            request_framing(&[("Transfer-Encoding", "gzip, Chunked")]).request(false),
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
            (
                vec![("Transfer-Encoding", "chunked,")],
                FramingError::EmptyCoding,
            ),
            (
                vec![("Transfer-Encoding", "gzip, , chunked")],
                FramingError::EmptyCoding,
            ),
            (vec![("Transfer-Encoding", "")], FramingError::EmptyCoding),
        ];
        for (headers, error) in refused {
            assert_eq!(
                request_framing(&headers).request(false),
                Err(error),
                "{headers:?}"
            );
        }
        assert_eq!(
            request_framing(&[("Transfer-Encoding", "chunked")]).request(true),
            Err(FramingError::EncodingInHttp10)
        );
    }

    #[test]
    fn response_framing_defaults_to_the_close() {
        assert_eq!(framing(&[]).response(false), Ok(Framing::UntilClose));
        assert_eq!(
            framing(&[("Content-Length", "0")]).response(false),
            Ok(Framing::Length(0))
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")]).response(false),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")]).response(true),
            Err(FramingError::EncodingInHttp10)
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

    /// Issue 14: what the scanner let through although RFC 9112 §7.1 does not allow it.
    #[test]
    fn sizes_extensions_and_trailers_are_held_to_rfc_9112() {
        for broken in [
            &b"3 4\r\nabc\r\n0\r\n\r\n"[..],
            b"3 \r\nabc\r\n0\r\n\r\n",
            b"3\t\r\nabc\r\n0\r\n\r\n",
            b"3;\r\nabc\r\n0\r\n\r\n",
            b"3;=x\r\nabc\r\n0\r\n\r\n",
            b"3;a\x01\r\nabc\r\n0\r\n\r\n",
            b"3;a=\r\nabc\r\n0\r\n\r\n",
            b"3;a=\"b\r\nabc\r\n0\r\n\r\n",
            b"3;a=b c\r\nabc\r\n0\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nA: b\r\n folded\r\n\r\n",
            b"0\r\nA: nul\x00\r\n\r\n",
        ] {
            assert_eq!(
                scan_all(broken),
                Err(ChunkError),
                "{:?}",
                String::from_utf8_lossy(broken)
            );
        }
        for fine in [
            &b"3 ;a=b ; c=\"d;\\\"e\" ;f\r\nabc\r\n0\r\nX-T:\r\n\r\n"[..],
            b"3;a\t;b=c\t\r\nabc\r\n0\r\nX-T: \xe9t\xe9\r\n\r\n",
        ] {
            assert_eq!(
                scan_all(fine),
                Ok((fine.len(), true)),
                "{:?}",
                String::from_utf8_lossy(fine)
            );
        }
    }

    /// Issue 14: the trailer limit counts every byte, so one-byte lines and line ends do not
    /// get more than `MAX_TRAILERS` past it.
    #[test]
    fn the_trailer_limit_counts_every_byte() {
        let within = [b"0\r\n".as_slice(), &b"a:\r\n".repeat(4000), b"\r\n"].concat();
        assert_eq!(scan_all(&within), Ok((within.len(), true)));
        let beyond = [b"0\r\n".as_slice(), &b"a:\r\n".repeat(4200), b"\r\n"].concat();
        assert_eq!(scan_all(&beyond), Err(ChunkError));
        let long_size_line = [b"1".as_slice(), &b" ".repeat(5000), b";a\r\n"].concat();
        assert_eq!(scan_all(&long_size_line), Err(ChunkError));
    }

    #[test]
    fn the_decoded_body_is_the_chunk_data() {
        let mut scanner = ChunkScanner::default();
        let mut decoded = Vec::new();
        let body = b"5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nT: 1\r\n\r\nNEXT";
        let used = scanner
            .scan_with(&body[..9], |data| decoded.extend_from_slice(data))
            .unwrap();
        let rest = scanner
            .scan_with(&body[9..], |data| decoded.extend_from_slice(data))
            .unwrap();
        assert_eq!(used + rest, body.len() - 4);
        assert_eq!(decoded, b"hello, world");
    }

    #[test]
    fn a_head_may_end_only_after_an_empty_line() {
        assert!(!head_may_end(b"GET / HTTP/1.1\r\nHost: a", 0));
        assert!(head_may_end(b"GET / HTTP/1.1\r\n\r\n", 0));
        assert!(head_may_end(b"GET / HTTP/1.1\n\n", 0));
        // The end straddles what was scanned and what is new.
        assert!(head_may_end(b"GET / HTTP/1.1\r\n\r\n", 16));
        assert!(!head_may_end(b"GET / HTTP/1.1\r\nA: b\r\n", 22));
    }

    /// A head trickled a byte at a time is looked at a bounded number of times per byte.
    #[test]
    fn a_trickled_head_costs_linear_time() {
        let head = [
            b"GET / HTTP/1.1\r\n".as_slice(),
            &b"X-A: b\r\n".repeat(20_000),
            b"\r\n",
        ]
        .concat();
        let (mut scanned, mut parses, mut examined) = (0usize, 0, 0);
        for end in 1..=head.len() {
            examined += end - scanned.saturating_sub(2);
            if head_may_end(&head[..end], scanned) {
                parses += 1;
            }
            scanned = end;
        }
        // At the empty line's CR, then at its LF: never before.
        assert_eq!(parses, 2, "parsed only once the head may be complete");
        assert!(examined <= 3 * head.len(), "{examined} bytes looked at");
    }

    #[test]
    fn a_host_is_a_host_and_a_port_and_nothing_else() {
        for fine in [
            "a.com",
            "A.com:9080",
            "a.com:",
            "a.com.",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:80",
            "xn--bcher-kva.example",
            "a_b.com",
            "%41.com",
        ] {
            assert!(is_host_and_port(fine), "{fine}");
        }
        for bad in [
            "",
            ":80",
            "a.com:80@evil.com",
            "a.com/../x",
            "a.com:80/x",
            "a.com:8o",
            "a.com\\x",
            "[::1",
            "[]",
            "[::1]x",
            "a com",
            "a.com?x",
            "a.com#x",
            "user@a.com",
            "a.com:80:80",
        ] {
            assert!(!is_host_and_port(bad), "{bad}");
        }
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
