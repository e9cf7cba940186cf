//! Incremental, bounded decoding of an HTTP `Content-Encoding` for the metering tee.
//!
//! The proxy forwards the upstream's bytes to the client untouched; the meter works on a copy.
//! When that copy is compressed (the SDKs send `Accept-Encoding: gzip, deflate`), the meter
//! runs it through a [`ContentDecoder`] before handing plain bytes to a
//! [`UsageParser`](super::UsageParser). Like the parsers, this module is pure and synchronous:
//! bytes in, bytes out through a callback, no I/O and no clock.
//!
//! Memory is bounded whatever the input: every decoder owns one fixed 16 KiB output buffer,
//! inflate keeps its 32 KiB window, and brotli keeps a ring buffer no larger than the window
//! the stream declares (at most 16 MiB, RFC 7932 section 9.1; the non-standard "large window"
//! extension is refused). Total output is capped ([`DEFAULT_MAX_OUTPUT_BYTES`], see
//! [`ContentDecoder::with_max_output_bytes`]) so a small compressed body cannot expand into
//! gigabytes (a "zip bomb"): past the cap decoding stops with [`DecodeError::TooLarge`].
//!
//! Supported codings (RFC 9110 section 8.4.1): `identity`, `gzip` and `x-gzip` (including
//! several concatenated members), `deflate` (the zlib format; raw deflate, which some servers
//! send instead, is detected from the first two bytes) and `br`. Anything else, including
//! several stacked codings such as `gzip, br`, yields no decoder: the caller cannot read the
//! body and meters nothing.

use std::fmt;

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Default cap on the decompressed bytes of one body: 64 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Size of the fixed output buffer each compressed decoder owns.
const OUT_BUF_BYTES: usize = 16 * 1024;

/// A content coding this module can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// No coding: bytes pass through unchanged.
    Identity,
    /// `gzip` or `x-gzip` (RFC 1952).
    Gzip,
    /// `deflate`: zlib (RFC 1950), or raw deflate (RFC 1951) when the body has no zlib header.
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
}

impl Encoding {
    /// Reads a `Content-Encoding` header value; `None` (absent header) means identity.
    ///
    /// Matching is case-insensitive and ignores whitespace and `identity` entries. Returns
    /// `None` for an unknown coding or for more than one non-identity coding.
    pub fn from_header(content_encoding: Option<&str>) -> Option<Encoding> {
        let Some(value) = content_encoding else {
            return Some(Encoding::Identity);
        };
        let mut found = Encoding::Identity;
        for token in value.split(',').map(str::trim) {
            let coding = if token.is_empty() || token.eq_ignore_ascii_case("identity") {
                continue;
            } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
                Encoding::Gzip
            } else if token.eq_ignore_ascii_case("deflate") {
                Encoding::Deflate
            } else if token.eq_ignore_ascii_case("br") {
                Encoding::Brotli
            } else {
                return None;
            };
            if found != Encoding::Identity {
                // Stacked codings ("gzip, br") are legal but nobody sends them to an LLM client.
                return None;
            }
            found = coding;
        }
        Some(found)
    }

    /// The coding's token as written in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a body could not be decoded. Output already delivered before the error stays valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The decompressed body passed the cap; exactly `limit` bytes were delivered.
    #[error("decompressed body exceeds the cap of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The input is not a valid stream of the coding.
    #[error("invalid {encoding} data: {reason}")]
    Corrupt { encoding: Encoding, reason: String },
    /// [`ContentDecoder::finish`] was called in the middle of a stream: the body was cut short.
    #[error("{encoding} body ended before the end of the compressed stream")]
    Truncated { encoding: Encoding },
}

impl DecodeError {
    fn corrupt(encoding: Encoding, reason: impl Into<String>) -> DecodeError {
        DecodeError::Corrupt {
            encoding,
            reason: reason.into(),
        }
    }
}

/// Undoes one `Content-Encoding`, chunk by chunk, with bounded memory and output.
///
/// Feed every body chunk in order to [`decode`](Self::decode), then call
/// [`finish`](Self::finish) at the end of the body. After the first error the decoder is
/// spent: every later call returns that error again and delivers nothing.
pub struct ContentDecoder {
    codec: Codec,
    limit: u64,
    total_in: u64,
    total_out: u64,
    failed: Option<DecodeError>,
}

enum Codec {
    Identity,
    Gzip(Box<GzipDecoder>),
    Deflate(Box<DeflateDecoder>),
    Brotli(Box<BrotliDecoder>),
}

impl fmt::Debug for ContentDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentDecoder")
            .field("encoding", &self.encoding())
            .field("limit", &self.limit)
            .field("total_in", &self.total_in)
            .field("total_out", &self.total_out)
            .field("failed", &self.failed)
            .finish()
    }
}

impl ContentDecoder {
    /// A decoder for a response's `Content-Encoding` value (`None`: the header is absent).
    ///
    /// Returns `None` when the coding is unknown or stacked (see [`Encoding::from_header`]):
    /// the body cannot be read, so nothing should be metered from it. Allocates at most
    /// one 16 KiB buffer plus the codec's state; does not block.
    pub fn for_encoding(content_encoding: Option<&str>) -> Option<ContentDecoder> {
        Encoding::from_header(content_encoding).map(ContentDecoder::new)
    }

    /// A decoder for a known coding, with the default output cap.
    pub fn new(encoding: Encoding) -> ContentDecoder {
        let codec = match encoding {
            Encoding::Identity => Codec::Identity,
            Encoding::Gzip => Codec::Gzip(Box::new(GzipDecoder::new())),
            Encoding::Deflate => Codec::Deflate(Box::new(DeflateDecoder::new())),
            Encoding::Brotli => Codec::Brotli(Box::new(BrotliDecoder::new())),
        };
        ContentDecoder {
            codec,
            limit: DEFAULT_MAX_OUTPUT_BYTES,
            total_in: 0,
            total_out: 0,
            failed: None,
        }
    }

    /// Replaces the cap on total output bytes (default [`DEFAULT_MAX_OUTPUT_BYTES`]).
    ///
    /// The cap applies to `identity` too, so callers see one rule for every coding.
    #[must_use]
    pub fn with_max_output_bytes(mut self, limit: u64) -> ContentDecoder {
        self.limit = limit;
        self
    }

    /// The coding this decoder undoes.
    pub fn encoding(&self) -> Encoding {
        match self.codec {
            Codec::Identity => Encoding::Identity,
            Codec::Gzip(_) => Encoding::Gzip,
            Codec::Deflate(_) => Encoding::Deflate,
            Codec::Brotli(_) => Encoding::Brotli,
        }
    }

    /// Encoded bytes accepted so far.
    pub fn total_in(&self) -> u64 {
        self.total_in
    }

    /// Decoded bytes delivered so far; never more than the cap.
    pub fn total_out(&self) -> u64 {
        self.total_out
    }

    /// Decodes the next chunk of the body, handing decoded bytes to `out` (possibly in
    /// several calls, possibly none while the codec waits for more input).
    ///
    /// Bytes are delivered as soon as the codec can produce them, so a streamed (SSE) body
    /// is metered as it arrives. On [`DecodeError::TooLarge`] the bytes up to the cap have
    /// been delivered. Never panics, whatever `chunk` holds.
    pub fn decode(&mut self, chunk: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<(), DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.total_in = self.total_in.saturating_add(chunk.len() as u64);
        let mut sink = Sink {
            out,
            total: &mut self.total_out,
            limit: self.limit,
        };
        let result = match &mut self.codec {
            Codec::Identity => sink.emit(chunk),
            Codec::Gzip(d) => d.decode(chunk, &mut sink),
            Codec::Deflate(d) => d.decode(chunk, &mut sink),
            Codec::Brotli(d) => d.decode(chunk, &mut sink),
        };
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Checks that the body ended where the compressed stream ends.
    ///
    /// Returns [`DecodeError::Truncated`] when the input stopped mid-stream (a cut
    /// connection), or the earlier error if decoding already failed. An empty body is
    /// complete for every coding (a 204 or a HEAD answer may carry `Content-Encoding`).
    /// Delivers no output and may be called more than once.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let complete = self.total_in == 0
            || match &self.codec {
                Codec::Identity => true,
                Codec::Gzip(d) => d.is_complete(),
                Codec::Deflate(d) => d.done,
                Codec::Brotli(d) => d.done,
            };
        if complete {
            Ok(())
        } else {
            let err = DecodeError::Truncated {
                encoding: self.encoding(),
            };
            self.failed = Some(err.clone());
            Err(err)
        }
    }
}

/// Delivers decoded bytes to the caller and enforces the output cap.
struct Sink<'a> {
    out: &'a mut dyn FnMut(&[u8]),
    total: &'a mut u64,
    limit: u64,
}

impl Sink<'_> {
    fn emit(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let room = self.limit.saturating_sub(*self.total);
        let len = bytes.len() as u64;
        if len <= room {
            (self.out)(bytes);
            *self.total += len;
            return Ok(());
        }
        // `room < bytes.len()`, so it fits in usize.
        let allowed = usize::try_from(room).unwrap_or(0);
        if allowed > 0 {
            (self.out)(&bytes[..allowed]);
            *self.total += room;
        }
        Err(DecodeError::TooLarge { limit: self.limit })
    }
}

/// Runs `inflate` over `input` until the input is used up or the deflate stream ends,
/// passing output to `emit`. Returns the bytes consumed and whether the stream ended.
fn run_inflate(
    inflate: &mut Decompress,
    input: &[u8],
    buf: &mut [u8],
    encoding: Encoding,
    emit: &mut dyn FnMut(&[u8]) -> Result<(), DecodeError>,
) -> Result<(usize, bool), DecodeError> {
    let mut consumed = 0;
    loop {
        let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
        let status = inflate.decompress(&input[consumed..], buf, FlushDecompress::None);
        // Both deltas are bounded by the slice lengths passed in.
        let used = usize::try_from(inflate.total_in() - in_before).unwrap_or(usize::MAX);
        let made = usize::try_from(inflate.total_out() - out_before).unwrap_or(usize::MAX);
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                // What inflate wrote before it found the error is delivered, as it would
                // have been had the input arrived in smaller chunks: the output must not
                // depend on how the body was split.
                emit(buf.get(..made).unwrap_or_default())?;
                return Err(DecodeError::corrupt(encoding, e.to_string()));
            }
        };
        let (Some(rest), Some(produced)) =
            (input.get(consumed.saturating_add(used)..), buf.get(..made))
        else {
            return Err(DecodeError::corrupt(
                encoding,
                "inflate reported impossible progress",
            ));
        };
        consumed = input.len() - rest.len();
        emit(produced)?;
        match status {
            Status::StreamEnd => return Ok((consumed, true)),
            // A full buffer may mean more output is pending even without new input.
            Status::Ok | Status::BufError if made == buf.len() => {}
            Status::Ok | Status::BufError if rest.is_empty() => return Ok((consumed, false)),
            Status::Ok | Status::BufError if used == 0 && made == 0 => {
                // Never spin: with input and room for output, inflate must move.
                return Err(DecodeError::corrupt(encoding, "inflate made no progress"));
            }
            Status::Ok | Status::BufError => {}
        }
    }
}

/// Header flag bits, RFC 1952 section 2.3.1.
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xE0;

/// Where a gzip decoder is within the current member (RFC 1952 section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzipState {
    /// The fixed 10-byte header: magic, method, flags, mtime, xfl, os.
    Header { bytes: [u8; 10], len: u8 },
    /// The 2-byte length of the FEXTRA field.
    ExtraLen { flags: u8, bytes: [u8; 2], len: u8 },
    /// Skipping the FEXTRA field.
    Extra { flags: u8, remaining: u16 },
    /// Skipping the zero-terminated file name.
    Name { flags: u8 },
    /// Skipping the zero-terminated comment.
    Comment { flags: u8 },
    /// Skipping the 2-byte header CRC.
    HeaderCrc { remaining: u8 },
    /// Inflating the deflate data.
    Body,
    /// The 8-byte trailer: CRC-32 and size mod 2^32 of the member's data.
    Trailer { bytes: [u8; 8], len: u8 },
    /// A member ended; more input must start another member.
    BetweenMembers,
}

impl GzipState {
    const START: GzipState = GzipState::Header {
        bytes: [0; 10],
        len: 0,
    };

    /// The state after the optional header field `done` (0: after the fixed header).
    fn after(flags: u8, done: u8) -> GzipState {
        // The optional fields, in wire order.
        const ORDER: [u8; 4] = [FEXTRA, FNAME, FCOMMENT, FHCRC];
        let next = ORDER.iter().position(|&f| f == done).map_or(0, |i| i + 1);
        match ORDER[next..].iter().copied().find(|&f| flags & f != 0) {
            Some(FEXTRA) => GzipState::ExtraLen {
                flags,
                bytes: [0; 2],
                len: 0,
            },
            Some(FNAME) => GzipState::Name { flags },
            Some(FCOMMENT) => GzipState::Comment { flags },
            Some(_) => GzipState::HeaderCrc { remaining: 2 },
            None => GzipState::Body,
        }
    }
}

struct GzipDecoder {
    state: GzipState,
    inflate: Decompress,
    crc: Crc,
    members: u32,
    buf: Box<[u8]>,
}

impl GzipDecoder {
    fn new() -> GzipDecoder {
        GzipDecoder {
            state: GzipState::START,
            inflate: Decompress::new(false),
            crc: Crc::new(),
            members: 0,
            buf: vec![0; OUT_BUF_BYTES].into_boxed_slice(),
        }
    }

    fn is_complete(&self) -> bool {
        self.state == GzipState::BetweenMembers
    }

    fn decode(&mut self, mut input: &[u8], sink: &mut Sink<'_>) -> Result<(), DecodeError> {
        const ENC: Encoding = Encoding::Gzip;
        while !input.is_empty() {
            match &mut self.state {
                GzipState::Header { bytes, len } => {
                    let n = take_into(bytes, len, input);
                    input = &input[n..];
                    // Check the magic as soon as it is here, so that garbage fails fast.
                    if *len >= 2 && bytes[..2] != [0x1f, 0x8b] {
                        let reason = if self.members == 0 {
                            "not a gzip stream (bad magic)"
                        } else {
                            "data after the last gzip member"
                        };
                        return Err(DecodeError::corrupt(ENC, reason));
                    }
                    if usize::from(*len) < bytes.len() {
                        continue;
                    }
                    let (method, flags) = (bytes[2], bytes[3]);
                    if method != 8 {
                        return Err(DecodeError::corrupt(
                            ENC,
                            "compression method is not deflate",
                        ));
                    }
                    if flags & FRESERVED != 0 {
                        return Err(DecodeError::corrupt(ENC, "reserved header flags set"));
                    }
                    self.state = GzipState::after(flags, 0);
                }
                GzipState::ExtraLen { flags, bytes, len } => {
                    let n = take_into(bytes, len, input);
                    input = &input[n..];
                    if usize::from(*len) == bytes.len() {
                        let remaining = u16::from_le_bytes(*bytes);
                        self.state = GzipState::Extra {
                            flags: *flags,
                            remaining,
                        };
                    }
                }
                GzipState::Extra { flags, remaining } => {
                    let n = input.len().min(usize::from(*remaining));
                    input = &input[n..];
                    // n <= remaining, which is a u16.
                    *remaining -= u16::try_from(n).unwrap_or(*remaining);
                    if *remaining == 0 {
                        self.state = GzipState::after(*flags, FEXTRA);
                    }
                }
                GzipState::Name { flags } => {
                    let flags = *flags;
                    input = skip_zero_terminated(
                        input,
                        &mut self.state,
                        GzipState::after(flags, FNAME),
                    );
                }
                GzipState::Comment { flags } => {
                    let flags = *flags;
                    input = skip_zero_terminated(
                        input,
                        &mut self.state,
                        GzipState::after(flags, FCOMMENT),
                    );
                }
                GzipState::HeaderCrc { remaining } => {
                    // The header CRC is optional and rarely sent; zlib skips it unless asked
                    // to check it, and so do we.
                    let n = input.len().min(usize::from(*remaining));
                    input = &input[n..];
                    *remaining -= u8::try_from(n).unwrap_or(*remaining);
                    if *remaining == 0 {
                        self.state = GzipState::Body;
                    }
                }
                GzipState::Body => {
                    let crc = &mut self.crc;
                    let mut emit = |bytes: &[u8]| {
                        crc.update(bytes);
                        sink.emit(bytes)
                    };
                    let (used, ended) =
                        run_inflate(&mut self.inflate, input, &mut self.buf, ENC, &mut emit)?;
                    input = &input[used..];
                    if ended {
                        self.state = GzipState::Trailer {
                            bytes: [0; 8],
                            len: 0,
                        };
                    }
                }
                GzipState::Trailer { bytes, len } => {
                    let n = take_into(bytes, len, input);
                    input = &input[n..];
                    if usize::from(*len) < bytes.len() {
                        continue;
                    }
                    let crc = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                    let size = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                    if crc != self.crc.sum() {
                        return Err(DecodeError::corrupt(ENC, "CRC-32 mismatch"));
                    }
                    if size != self.crc.amount() {
                        return Err(DecodeError::corrupt(ENC, "length mismatch"));
                    }
                    self.members = self.members.saturating_add(1);
                    self.state = GzipState::BetweenMembers;
                }
                GzipState::BetweenMembers => {
                    // RFC 1952 section 2.2: a gzip file is a series of members.
                    self.inflate.reset(false);
                    self.crc.reset();
                    self.state = GzipState::START;
                }
            }
        }
        Ok(())
    }
}

/// Skips a zero-terminated header field; moves to `next` once its NUL is seen.
fn skip_zero_terminated<'a>(input: &'a [u8], state: &mut GzipState, next: GzipState) -> &'a [u8] {
    match input.iter().position(|&b| b == 0) {
        Some(nul) => {
            *state = next;
            &input[nul + 1..]
        }
        None => &[],
    }
}

/// Copies as much of `input` as fits after `bytes[..len]`; returns how many bytes it took.
fn take_into<const N: usize>(bytes: &mut [u8; N], len: &mut u8, input: &[u8]) -> usize {
    let have = usize::from(*len).min(N);
    let n = (N - have).min(input.len());
    bytes[have..have + n].copy_from_slice(&input[..n]);
    // have + n <= N, and every N used here is below 256.
    *len = u8::try_from(have + n).unwrap_or(u8::MAX);
    n
}

struct DeflateDecoder {
    /// The first two bytes, held until we know whether they are a zlib header.
    sniff: [u8; 2],
    sniffed: u8,
    inflate: Option<Decompress>,
    done: bool,
    buf: Box<[u8]>,
}

impl DeflateDecoder {
    fn new() -> DeflateDecoder {
        DeflateDecoder {
            sniff: [0; 2],
            sniffed: 0,
            inflate: None,
            done: false,
            buf: vec![0; OUT_BUF_BYTES].into_boxed_slice(),
        }
    }

    /// RFC 1950 section 2.2: CM = 8, CINFO <= 7, no preset dictionary, FCHECK makes the
    /// 16-bit header a multiple of 31. A raw deflate stream matches this by chance rarely
    /// (curl and browsers use the same test).
    fn is_zlib_header([cmf, flg]: [u8; 2]) -> bool {
        cmf & 0x0f == 8
            && cmf >> 4 <= 7
            && flg & 0x20 == 0
            && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
    }

    fn decode(&mut self, mut input: &[u8], sink: &mut Sink<'_>) -> Result<(), DecodeError> {
        const ENC: Encoding = Encoding::Deflate;
        if self.done {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(DecodeError::corrupt(
                    ENC,
                    "data after the end of the stream",
                ))
            };
        }
        let mut emit = |bytes: &[u8]| sink.emit(bytes);
        let inflate = match &mut self.inflate {
            Some(inflate) => inflate,
            None => {
                let n = take_into(&mut self.sniff, &mut self.sniffed, input);
                input = &input[n..];
                if usize::from(self.sniffed) < self.sniff.len() {
                    return Ok(());
                }
                let inflate = self
                    .inflate
                    .insert(Decompress::new(Self::is_zlib_header(self.sniff)));
                let (_, ended) = run_inflate(inflate, &self.sniff, &mut self.buf, ENC, &mut emit)?;
                self.done = ended;
                inflate
            }
        };
        if self.done {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(DecodeError::corrupt(
                    ENC,
                    "data after the end of the stream",
                ))
            };
        }
        let (used, ended) = run_inflate(inflate, input, &mut self.buf, ENC, &mut emit)?;
        self.done = ended;
        if used < input.len() {
            return Err(DecodeError::corrupt(
                ENC,
                "data after the end of the stream",
            ));
        }
        Ok(())
    }
}

struct BrotliDecoder {
    state: BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>,
    done: bool,
    buf: Box<[u8]>,
}

impl BrotliDecoder {
    fn new() -> BrotliDecoder {
        let mut state = BrotliState::new(
            StandardAlloc::default(),
            StandardAlloc::default(),
            StandardAlloc::default(),
        );
        // brotli-decompressor accepts "large window" streams (up to a 1 GiB ring buffer) by
        // default. HTTP `br` is RFC 7932, whose window is at most 16 MiB: refuse the rest.
        state.large_window = false;
        BrotliDecoder {
            state,
            done: false,
            buf: vec![0; OUT_BUF_BYTES].into_boxed_slice(),
        }
    }

    fn decode(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), DecodeError> {
        const ENC: Encoding = Encoding::Brotli;
        if self.done {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(DecodeError::corrupt(
                    ENC,
                    "data after the end of the stream",
                ))
            };
        }
        let mut available_in = input.len();
        let mut input_offset = 0;
        let mut total_out = 0;
        loop {
            let mut available_out = self.buf.len();
            let mut output_offset = 0;
            let result = BrotliDecompressStream(
                &mut available_in,
                &mut input_offset,
                input,
                &mut available_out,
                &mut output_offset,
                &mut self.buf,
                &mut total_out,
                &mut self.state,
            );
            let produced = self.buf.get(..output_offset).unwrap_or_default();
            sink.emit(produced)?;
            match result {
                BrotliResult::NeedsMoreOutput => {}
                // All input was taken in (a partial symbol waits inside the state).
                BrotliResult::NeedsMoreInput => return Ok(()),
                BrotliResult::ResultSuccess => {
                    self.done = true;
                    return if available_in == 0 {
                        Ok(())
                    } else {
                        Err(DecodeError::corrupt(
                            ENC,
                            "data after the end of the stream",
                        ))
                    };
                }
                BrotliResult::ResultFailure => {
                    let reason = format!("decoder error {:?}", self.state.error_code);
                    return Err(DecodeError::corrupt(ENC, reason));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use proptest::prelude::*;

    use super::*;

    /// The text behind [`BR_TEXT`]: 400 SSE-like events, 18 654 bytes.
    fn br_text_plain() -> Vec<u8> {
        let mut s = String::new();
        for i in 0..400 {
            s.push_str(&format!(
                "data: {{\"id\":\"chatcmpl-{i}\",\"delta\":\"word{} \"}}\n\n",
                i * 37 % 101
            ));
        }
        s.into_bytes()
    }

    /// `br_text_plain()` compressed by Node's zlib (brotli quality 11, lgwin 22); there is
    /// no brotli encoder among our crates.
    const BR_TEXT: &str = concat!(
        "1bdd48239205528b28200655ab04dbc11a1d28ec0d8a1de070a67fea9bf06a2423547a8a8028a4ce5e9f1e0c63c52eb7b1f5",
        "dd0a8273d6090a62220ea50edd8d19fe290e96fbc39d8f146086a5e152b3d49ce0b517de58c3c5b4844e281be3c84a372483",
        "0fafce3458f85ef7ab414fed9ea4ffe05d5bda6b761452434dddd1aa8c762d75ea8d6e55f4ea53bf62be35b2a35d23dd9993",
        "9013312fa4ac9173a3e4839a3dfafa994c06b439a35b3be14c24e68e94d7721694fca3e6b3be1ad3cc9f7786f60ca7cb81b0",
        "fe11cf74522ee4bcaf6459cd0f7dbd9fd6645bbbbe74677c428ec5bc2765be9c6b25dfa959afafef694fc669b35fb756c299",
        "9798f3525ec959a7e4be9a4ffaea9bcee47f6d86743927ac9b78a692724fce5b254b6afed3d7eb74275bdaf5a63ba3093912",
        "f3ae945939574abe55b3aaafafe94dc66ab3ab5b3362bd893995f252ce5a25b76a3eeaab77fa93bfda0cea7296f838f14c26",
        "e5ae9c374a16d5fcabaf975fcde8a6763fe9ee48420fc5be237546eea5d26fd4aee8f373dae9186d77747b24dc39893d91fa",
        "42ee1aa5376a3fe8b367bae91f6d07743d23ec9d7827927a47ee6ba50b6affd1e7f384c906f7c39e8db270b20055a02c4816",
        "2c0b9185cac2cbe2c8e2aae2c9226491b22859b42c46162b8b2f4b234b2b4ba74a9025ca9264c9b21459aa2cbd2c8f2caf2c",
        "9f2c439529cb9265cb7264b9b2fcb232b2b2aa72b20259a1ac48562c2b9195cacacbeac8eacaeaa92a6495b22a59b5ac4656",
        "2bab2feb47d6afac3f590f554f592f596f591f595f59ff32339859658e19304366c48c99093365e6991d6697d95316cc9259",
        "316b66c36c997de686b965ee988372644ecc99b93057e69ec1305807c7000ca8400ccc200ccae0190ec365780ac1900cc5d0",
        "0cc3b00c9fd1305a46c7088ac8488ccc288ccae8190fe3657c8cc1988ac5d88cc3b88c9fc9305926a7044cc8444ccc244cca",
        "e4990ed3657a4ca1944cc5d44cc3b44c9ff9617e993fe6c13c9517f3663ecc97f967ed336c96cda9011bb2111bb3099bb279",
        "b6c376d91e5ba8255bb135dbb02ddb6737ec96ddb1033baa133bb30bbbb27b8661588673000319a460863094e1198771198f",
        "118a6414a319c358c6671aa6653a263051494c660a53999e799897f998c14c66299b39cc657e9661599663810a59c46296b0",
        "94e5598775598f15ac5415ab59c35ad6673fec97fdb1077bb2977ab30ffb0eff",
    );

    /// 16 MiB of zero bytes as a 27-byte brotli stream (Node, quality 11).
    const BR_BOMB_16MIB: &str = "cbffff3ff82700e2b14020f7fe2ffffffff04f00c4611180eefd1f";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Feeds `input` split at `cuts` (any offsets, sorted here) and collects the output.
    fn decode_split(
        mut d: ContentDecoder,
        input: &[u8],
        cuts: &[usize],
    ) -> (Vec<u8>, Result<(), DecodeError>) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        let mut out = Vec::new();
        let mut start = 0;
        for end in cuts {
            if let Err(e) = d.decode(&input[start..end], &mut |b| out.extend_from_slice(b)) {
                return (out, Err(e));
            }
            start = end;
        }
        let result = d.finish();
        (out, result)
    }

    fn decode_all(encoding: Option<&str>, input: &[u8]) -> (Vec<u8>, Result<(), DecodeError>) {
        decode_split(ContentDecoder::for_encoding(encoding).unwrap(), input, &[])
    }

    /// Payloads from a seed: incompressible noise, text-like bytes, or long runs with noise,
    /// so inflate sees stored, fixed and dynamic blocks. (Generating a 60 000-element vector
    /// element by element through proptest is slow in debug builds.)
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        (any::<u64>(), 0..60_000usize, 0..3u8).prop_map(|(seed, len, kind)| {
            let mut x = seed | 1;
            let mut next = move || {
                // xorshift64*
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes()[7]
            };
            match kind {
                0 => (0..len.min(5_000)).map(|_| next()).collect(),
                1 => (0..len)
                    .map(|_| b"ab \n{}\"data:"[usize::from(next()) % 12])
                    .collect(),
                _ => (0..len)
                    .map(|i| if next() < 8 { next() } else { (i / 1000) as u8 })
                    .collect(),
            }
        })
    }

    proptest! {
        #[test]
        fn gzip_round_trips_in_any_split(data in payload(), cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
            let (out, result) = decode_split(ContentDecoder::new(Encoding::Gzip), &gzip(&data), &cuts);
            prop_assert_eq!(result, Ok(()));
            prop_assert_eq!(out, data);
        }

        #[test]
        fn deflate_round_trips_in_any_split(data in payload(), cuts in proptest::collection::vec(any::<usize>(), 0..40), raw in any::<bool>()) {
            let input = if raw { raw_deflate(&data) } else { zlib(&data) };
            let (out, result) = decode_split(ContentDecoder::new(Encoding::Deflate), &input, &cuts);
            prop_assert_eq!(result, Ok(()));
            prop_assert_eq!(out, data);
        }

        #[test]
        fn brotli_round_trips_in_any_split(cuts in proptest::collection::vec(any::<usize>(), 0..60)) {
            let (out, result) = decode_split(ContentDecoder::new(Encoding::Brotli), &unhex(BR_TEXT), &cuts);
            prop_assert_eq!(result, Ok(()));
            prop_assert_eq!(out, br_text_plain());
        }

        #[test]
        fn truncated_input_never_panics_and_is_reported(data in payload(), keep in any::<usize>(), enc in 0..3u8) {
            let (encoding, input) = match enc {
                0 => (Encoding::Gzip, gzip(&data)),
                1 => (Encoding::Deflate, zlib(&data)),
                _ => (Encoding::Brotli, unhex(BR_TEXT)),
            };
            let keep = 1 + keep % (input.len() - 1); // non-empty, strictly shorter
            let (_, result) = decode_split(ContentDecoder::new(encoding), &input[..keep], &[keep / 2]);
            prop_assert!(result.is_err(), "{encoding} cut at {keep}/{} was accepted", input.len());
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2_000), enc in 0..3u8) {
            let encoding = [Encoding::Gzip, Encoding::Deflate, Encoding::Brotli][usize::from(enc)];
            let mut d = ContentDecoder::new(encoding).with_max_output_bytes(1 << 20);
            let _ = d.decode(&data, &mut |_| {});
            let _ = d.finish();
        }
    }

    #[test]
    fn header_values_pick_the_codec() {
        let enc = |v| ContentDecoder::for_encoding(v).map(|d| d.encoding());
        assert_eq!(enc(None), Some(Encoding::Identity));
        assert_eq!(enc(Some("")), Some(Encoding::Identity));
        assert_eq!(enc(Some("identity")), Some(Encoding::Identity));
        assert_eq!(enc(Some("gzip")), Some(Encoding::Gzip));
        assert_eq!(enc(Some(" X-GZIP ")), Some(Encoding::Gzip));
        assert_eq!(enc(Some("Deflate")), Some(Encoding::Deflate));
        assert_eq!(enc(Some("br")), Some(Encoding::Brotli));
        assert_eq!(enc(Some("identity, br")), Some(Encoding::Brotli));
        assert_eq!(enc(Some("zstd")), None);
        assert_eq!(enc(Some("compress")), None);
        assert_eq!(enc(Some("gzip, br")), None);
    }

    #[test]
    fn identity_passes_chunks_through() {
        let (out, result) = decode_split(
            ContentDecoder::new(Encoding::Identity),
            b"data: {}\n\n",
            &[3, 5],
        );
        assert_eq!(result, Ok(()));
        assert_eq!(out, b"data: {}\n\n");
    }

    #[test]
    fn gzip_byte_by_byte_streams_output_early() {
        let data = br_text_plain();
        let input = gzip(&data);
        let mut d = ContentDecoder::new(Encoding::Gzip);
        let mut out = Vec::new();
        let mut first_output_at = None;
        for (i, b) in input.iter().enumerate() {
            d.decode(std::slice::from_ref(b), &mut |o| out.extend_from_slice(o))
                .unwrap();
            if first_output_at.is_none() && !out.is_empty() {
                first_output_at = Some(i);
            }
        }
        d.finish().unwrap();
        assert_eq!(out, data);
        assert!(
            first_output_at.unwrap() < input.len() / 2,
            "output was held back"
        );
        assert_eq!(d.total_in(), input.len() as u64);
        assert_eq!(d.total_out(), data.len() as u64);
    }

    #[test]
    fn gzip_header_fields_and_members_are_handled() {
        let mut e = flate2::GzBuilder::new()
            .extra(vec![1, 2, 3, 4, 5])
            .filename("usage.json")
            .comment("a comment")
            .mtime(7)
            .write(Vec::new(), Compression::best());
        e.write_all(b"first member, ").unwrap();
        let mut input = e.finish().unwrap();
        // Set FHCRC with a (skipped) 2-byte header CRC after the comment's NUL.
        let body_at = 10 + 2 + 5 + "usage.json".len() + 1 + "a comment".len() + 1;
        input[3] |= FHCRC;
        input.splice(body_at..body_at, [0xAA, 0xBB]);
        input.extend(gzip(b"second member"));
        for step in [1, 2, 3, 7, input.len()] {
            let cuts: Vec<usize> = (0..input.len()).step_by(step).collect();
            let (out, result) = decode_split(ContentDecoder::new(Encoding::Gzip), &input, &cuts);
            assert_eq!(result, Ok(()), "step {step}");
            assert_eq!(out, b"first member, second member");
        }
    }

    #[test]
    fn truncated_gzip_reports_truncated() {
        let data = br_text_plain();
        let input = gzip(&data);
        for keep in [
            1,
            5,
            10,
            11,
            input.len() / 2,
            input.len() - 8,
            input.len() - 1,
        ] {
            let mut d = ContentDecoder::new(Encoding::Gzip);
            let mut out = Vec::new();
            d.decode(&input[..keep], &mut |b| out.extend_from_slice(b))
                .unwrap();
            assert_eq!(
                d.finish(),
                Err(DecodeError::Truncated {
                    encoding: Encoding::Gzip
                }),
                "kept {keep}"
            );
            assert!(data.starts_with(&out), "output before the cut is a prefix");
            // Spent: the error sticks.
            assert!(
                d.decode(&input[keep..], &mut |_| panic!("output after an error"))
                    .is_err()
            );
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let (_, result) = decode_all(Some("gzip"), b"{\"not\": \"gzip\"}");
        assert!(
            matches!(
                result,
                Err(DecodeError::Corrupt {
                    encoding: Encoding::Gzip,
                    ..
                })
            ),
            "{result:?}"
        );

        let mut input = gzip(b"hello hello hello");
        let crc_at = input.len() - 8;
        input[crc_at] ^= 0xff;
        let (_, result) = decode_all(Some("gzip"), &input);
        assert_eq!(
            result,
            Err(DecodeError::corrupt(Encoding::Gzip, "CRC-32 mismatch"))
        );

        let mut input = gzip(b"hello");
        input.extend_from_slice(b"\0\0junk");
        let (out, result) = decode_all(Some("gzip"), &input);
        assert_eq!(out, b"hello");
        assert_eq!(
            result,
            Err(DecodeError::corrupt(
                Encoding::Gzip,
                "data after the last gzip member"
            ))
        );
    }

    #[test]
    fn data_after_deflate_or_brotli_end_is_an_error() {
        for (enc, mut input) in [
            ("deflate", zlib(b"x")),
            ("deflate", raw_deflate(b"x")),
            ("br", unhex(BR_TEXT)),
        ] {
            input.push(0);
            let (_, result) = decode_all(Some(enc), &input);
            assert!(
                matches!(result, Err(DecodeError::Corrupt { .. })),
                "{enc}: {result:?}"
            );
        }
    }

    #[test]
    fn empty_body_is_complete() {
        for enc in [None, Some("gzip"), Some("deflate"), Some("br")] {
            let mut d = ContentDecoder::for_encoding(enc).unwrap();
            d.decode(b"", &mut |_| panic!("no output expected"))
                .unwrap();
            assert_eq!(d.finish(), Ok(()), "{enc:?}");
        }
    }

    #[test]
    fn one_byte_deflate_body_is_truncated() {
        let (_, result) = decode_all(Some("deflate"), &zlib(b"abc")[..1]);
        assert_eq!(
            result,
            Err(DecodeError::Truncated {
                encoding: Encoding::Deflate
            })
        );
    }

    #[test]
    fn gzip_bomb_is_cut_at_the_cap() {
        let bomb = gzip(&vec![0; 8 << 20]);
        assert!(bomb.len() < 10_000);
        let cap = 1 << 20;
        let mut d = ContentDecoder::new(Encoding::Gzip).with_max_output_bytes(cap);
        let mut seen = 0u64;
        let result = d.decode(&bomb, &mut |b| seen += b.len() as u64);
        assert_eq!(result, Err(DecodeError::TooLarge { limit: cap }));
        assert_eq!(seen, cap);
        assert_eq!(d.total_out(), cap);
        assert_eq!(d.finish(), Err(DecodeError::TooLarge { limit: cap }));
    }

    #[test]
    fn brotli_bomb_is_cut_at_the_cap() {
        let bomb = unhex(BR_BOMB_16MIB);
        let cap = 1 << 20;
        let mut seen = 0u64;
        let mut d = ContentDecoder::new(Encoding::Brotli).with_max_output_bytes(cap);
        // Even fed byte by byte, decoding stops at the cap.
        let result = bomb
            .iter()
            .try_for_each(|b| d.decode(std::slice::from_ref(b), &mut |o| seen += o.len() as u64));
        assert_eq!(result, Err(DecodeError::TooLarge { limit: cap }));
        assert_eq!(seen, cap);
    }

    #[test]
    fn output_exactly_at_the_cap_is_fine() {
        let data = br_text_plain();
        let cap = data.len() as u64;
        let (out, result) = decode_split(
            ContentDecoder::new(Encoding::Gzip).with_max_output_bytes(cap),
            &gzip(&data),
            &[],
        );
        assert_eq!(result, Ok(()));
        assert_eq!(out, data);
        let (out, result) = decode_split(
            ContentDecoder::new(Encoding::Identity).with_max_output_bytes(cap - 1),
            &data,
            &[],
        );
        assert_eq!(result, Err(DecodeError::TooLarge { limit: cap - 1 }));
        assert_eq!(out, data[..data.len() - 1]);
    }

    #[test]
    fn default_cap_allows_large_bodies() {
        let mut d = ContentDecoder::new(Encoding::Brotli);
        let mut seen = 0u64;
        d.decode(&unhex(BR_BOMB_16MIB), &mut |o| seen += o.len() as u64)
            .unwrap();
        d.finish().unwrap();
        assert_eq!(seen, 16 << 20);
    }

    #[test]
    fn large_window_brotli_is_refused() {
        // A large-window stream header (RFC 7932 reserves this WBITS code): 0x11 then wbits 30.
        let (_, result) = decode_all(Some("br"), &[0x11, 0x1e, 0x00, 0x00, 0x00, 0x00]);
        assert!(
            matches!(
                result,
                Err(DecodeError::Corrupt {
                    encoding: Encoding::Brotli,
                    ..
                })
            ),
            "{result:?}"
        );
    }
}
