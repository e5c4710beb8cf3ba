//! Lets etcdctl's per-endpoint gRPC clients in: etcdctl 3.4 dials `endpoint
//! status`, `endpoint hashkv` and `defrag` with grpc-go's passthrough resolver
//! on the whole endpoint URL, so its `:authority` is `http://127.0.0.1:2379`. A
//! URL is not an authority; grpc-go's server (etcd) accepts it, but the h2 crate
//! under tonic resets such a stream with PROTOCOL_ERROR and offers no option.
//!
//! So the inbound side of every gRPC connection passes through [`AuthorityFix`]:
//! a reader that follows the HTTP/2 frames and, in a HEADERS frame, replaces an
//! `:authority` literal whose value starts with `http://` (plain or Huffman
//! coded) by a valid one — the rest of the value when it is plain, `stead` when
//! it is Huffman coded (stead never reads the authority). The new value is never
//! longer than the old, so the HPACK dynamic table on our side only ever holds
//! entries no larger than the client's: it evicts no later than the client's
//! encoder expects, and every index the client sends still names the same entry.
//! Anything it cannot parse passes through untouched (h2 then judges it).
//!
//! Owns that rewrite only: it never looks at data frames or the outbound side.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The client connection preface (RFC 9113 §3.4), passed through as is.
const PREFACE_BYTES: usize = 24;
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_TYPE_HEADERS: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// A HEADERS frame larger than this is passed through unparsed (grpc-go's
/// request headers are a few hundred bytes).
const HEADERS_FRAME_MAX: usize = 64 * 1024;
/// The static HPACK table index of `:authority`.
const AUTHORITY_INDEX: u64 = 1;
/// `http://` Huffman coded (RFC 7541 Appendix B): its first 40 bits.
const HUFFMAN_HTTP_PREFIX: [u8; 5] = [0x9d, 0x29, 0xae, 0xe3, 0x0c];
/// The authority put in place of a Huffman-coded URL (shorter than any URL).
const REPLACEMENT_AUTHORITY: &[u8] = b"stead";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes of the preface still to pass.
    Preface(usize),
    /// At a frame boundary.
    FrameHeader,
    /// Payload bytes of the current frame still to pass unchanged.
    Passthrough(usize),
}

/// A gRPC connection whose inbound `:authority` URLs are made authorities.
pub struct AuthorityFix {
    inner: TcpStream,
    state: State,
    /// Read from the socket, not yet passed on.
    pending: BytesMut,
    /// Ready for the reader.
    ready: BytesMut,
    eof: bool,
}

impl AuthorityFix {
    pub fn new(inner: TcpStream) -> Self {
        AuthorityFix {
            inner,
            state: State::Preface(PREFACE_BYTES),
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            eof: false,
        }
    }

    /// Moves what can be decided from `pending` to `ready`; false when it needs
    /// more bytes.
    fn advance(&mut self) -> bool {
        match self.state {
            State::Preface(left) | State::Passthrough(left) => {
                if self.pending.is_empty() && left > 0 {
                    return false;
                }
                let n = left.min(self.pending.len());
                self.ready.extend_from_slice(&self.pending.split_to(n));
                self.state = match self.state {
                    State::Preface(_) if left == n => State::FrameHeader,
                    State::Preface(_) => State::Preface(left - n),
                    _ if left == n => State::FrameHeader,
                    _ => State::Passthrough(left - n),
                };
                true
            }
            State::FrameHeader => {
                if self.pending.len() < FRAME_HEADER_BYTES {
                    return false;
                }
                let h = &self.pending[..FRAME_HEADER_BYTES];
                let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                let (kind, flags) = (h[3], h[4]);
                let whole = kind == FRAME_TYPE_HEADERS && flags & FLAG_END_HEADERS != 0 && len <= HEADERS_FRAME_MAX;
                if !whole {
                    self.ready.extend_from_slice(&self.pending.split_to(FRAME_HEADER_BYTES));
                    self.state = State::Passthrough(len);
                    return true;
                }
                if self.pending.len() < FRAME_HEADER_BYTES + len {
                    return false;
                }
                let mut header = self.pending.split_to(FRAME_HEADER_BYTES);
                let payload = self.pending.split_to(len);
                let payload = rewrite_headers_payload(flags, &payload).unwrap_or_else(|| payload.to_vec());
                let new_len = payload.len();
                header[0] = (new_len >> 16) as u8;
                header[1] = (new_len >> 8) as u8;
                header[2] = new_len as u8;
                self.ready.extend_from_slice(&header);
                self.ready.extend_from_slice(&payload);
                true
            }
        }
    }
}

impl AsyncRead for AuthorityFix {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.advance() {
                continue;
            }
            if this.eof {
                // A truncated frame at EOF: hand on what there is; h2 judges it.
                if this.pending.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let rest = this.pending.split();
                this.ready.extend_from_slice(&rest);
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.pending.extend_from_slice(read.filled());
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for AuthorityFix {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for AuthorityFix {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.inner.local_addr().ok(),
            remote_addr: self.inner.peer_addr().ok(),
        }
    }
}

/// A HEADERS frame's payload with its `:authority` URL made an authority, or
/// None when there is nothing to change (or it does not parse).
fn rewrite_headers_payload(flags: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let mut start = 0;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        pad = usize::from(*payload.first()?);
        start = 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    let end = payload.len().checked_sub(pad)?;
    if start > end {
        return None;
    }
    let block = rewrite_block(&payload[start..end])?;
    let mut out = Vec::with_capacity(payload.len());
    out.extend_from_slice(&payload[..start]);
    out.extend_from_slice(&block);
    out.extend_from_slice(&payload[end..]);
    Some(out)
}

/// An HPACK integer with an `n`-bit prefix at the start of `b`: (value, bytes).
fn decode_int(b: &[u8], n: u32) -> Option<(u64, usize)> {
    let max = (1u64 << n) - 1;
    let mut value = u64::from(*b.first()?) & max;
    if value < max {
        return Some((value, 1));
    }
    let mut shift = 0;
    for (i, &byte) in b.iter().enumerate().skip(1) {
        value = value.checked_add(u64::from(byte & 0x7f).checked_shl(shift)?)?;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
        shift += 7;
        if shift > 56 {
            return None;
        }
    }
    None
}

/// An HPACK string literal (plain, 7-bit length prefix).
fn encode_plain_string(s: &[u8], out: &mut Vec<u8>) {
    let len = s.len() as u64;
    if len < 0x7f {
        out.push(len as u8);
    } else {
        out.push(0x7f);
        let mut rest = len - 0x7f;
        while rest >= 0x80 {
            out.push((rest as u8 & 0x7f) | 0x80);
            rest >>= 7;
        }
        out.push(rest as u8);
    }
    out.extend_from_slice(s);
}

/// A string literal at the start of `b`: (huffman, bytes of the value, total bytes).
fn string_at(b: &[u8]) -> Option<(bool, &[u8], usize)> {
    let huffman = *b.first()? & 0x80 != 0;
    let (len, n) = decode_int(b, 7)?;
    let len = usize::try_from(len).ok()?;
    let value = b.get(n..n.checked_add(len)?)?;
    Some((huffman, value, n + len))
}

/// The header block with `:authority` URL literals replaced; None when nothing
/// changed or it does not parse.
fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut changed = false;
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        let prefix_bits = if b & 0x80 != 0 {
            // An indexed field: copy.
            let (_, n) = decode_int(&block[i..], 7)?;
            out.extend_from_slice(&block[i..i + n]);
            i += n;
            continue;
        } else if b & 0xc0 == 0x40 {
            6
        } else if b & 0xe0 == 0x20 {
            // A dynamic table size update: copy.
            let (_, n) = decode_int(&block[i..], 5)?;
            out.extend_from_slice(&block[i..i + n]);
            i += n;
            continue;
        } else {
            4
        };
        let field_start = i;
        let (name_index, n) = decode_int(&block[i..], prefix_bits)?;
        i += n;
        if name_index == 0 {
            let (_, _, n) = string_at(&block[i..])?;
            i += n;
        }
        let value_start = i;
        let (huffman, value, n) = string_at(&block[i..])?;
        i += n;
        let replacement: Option<&[u8]> = if name_index != AUTHORITY_INDEX {
            None
        } else if !huffman {
            value.strip_prefix(b"http://".as_slice())
        } else if value.len() > HUFFMAN_HTTP_PREFIX.len() && value.starts_with(&HUFFMAN_HTTP_PREFIX) {
            Some(REPLACEMENT_AUTHORITY)
        } else {
            None
        };
        out.extend_from_slice(&block[field_start..value_start]);
        match replacement {
            Some(new) if !new.is_empty() => {
                encode_plain_string(new, &mut out);
                changed = true;
            }
            _ => out.extend_from_slice(&block[value_start..i]),
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header block etcdctl 3.4 sent for `endpoint status` (captured): POST,
    /// http, :path, and `:authority: http://127.0.0.1:47361` Huffman coded.
    const ETCDCTL_BLOCK: &str = "8386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae05c0b86e34eb2e075f8b1d75d0620d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f860befbc179eb7408d25062d495875996ee5b1063d5f03332e34";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn etcdctl_huffman_url_authority_is_replaced_and_the_rest_kept() {
        let block = unhex(ETCDCTL_BLOCK);
        let out = rewrite_block(&block).expect("rewritten");
        // Up to the authority literal, unchanged; then `stead` as a plain literal;
        // then everything after the old 16-byte value, unchanged.
        let at = block.windows(2).position(|w| w == [0x41, 0x90]).unwrap();
        assert_eq!(&out[..at], &block[..at]);
        assert_eq!(&out[at..at + 7], b"\x41\x05stead");
        assert_eq!(&out[at + 7..], &block[at + 2 + 16..]);
        // A second pass finds nothing left to change.
        assert_eq!(rewrite_block(&out), None);
    }

    #[test]
    fn plain_url_authority_loses_its_scheme() {
        // :method GET (indexed 2), :authority literal without indexing, plain.
        let mut block = vec![0x82, 0x01];
        encode_plain_string(b"http://127.0.0.1:2379", &mut block);
        let out = rewrite_block(&block).expect("rewritten");
        let mut want = vec![0x82, 0x01];
        encode_plain_string(b"127.0.0.1:2379", &mut want);
        assert_eq!(out, want);
        // A valid authority is left alone.
        let mut ok = vec![0x41];
        encode_plain_string(b"127.0.0.1:2379", &mut ok);
        assert_eq!(rewrite_block(&ok), None);
    }

    #[test]
    fn padded_and_prioritised_frames_keep_their_framing() {
        let mut block = vec![0x41];
        encode_plain_string(b"http://h:1", &mut block);
        let mut payload = vec![2u8, 0, 0, 0, 1, 16];
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0]);
        let out = rewrite_headers_payload(FLAG_PADDED | FLAG_PRIORITY, &payload).expect("rewritten");
        assert_eq!(&out[..6], &payload[..6]);
        assert_eq!(&out[6..out.len() - 2], b"\x41\x03h:1");
        assert_eq!(&out[out.len() - 2..], &[0, 0]);
        // Garbage does not parse: passed on unchanged by the caller.
        assert_eq!(rewrite_headers_payload(FLAG_PADDED, &[200, 1, 2]), None);
        assert_eq!(decode_int(&[0x7f, 0x80], 7), None);
    }
}
