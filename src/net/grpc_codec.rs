//! The gRPC codec: prost's, counting the bytes of every message it decodes and
//! encodes into `etcd_network_client_grpc_received_bytes_total` and
//! `…_sent_bytes_total`, as etcd's own gRPC codec counts them (the protobuf
//! message, without gRPC's or HTTP/2's framing; streams included). The JSON
//! gateway counts the protobuf size of the messages it stands for, as etcd's
//! gateway reaches its server over gRPC.
//!
//! The generated services build their codec with `Default`, so the counters are
//! process-wide: one member per process, as `stead` runs. Clients built from the
//! same generated code (steadctl, stead-bench, tests) count too; nothing reads
//! their counters. It must never do more per message than add to a counter.

use std::marker::PhantomData;
use std::sync::LazyLock;

use prometheus::IntCounter;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes of the gRPC messages this process has received (decoded).
pub static RECEIVED_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter("etcd_network_client_grpc_received_bytes_total", "The total number of bytes received from grpc clients.")
});

/// Bytes of the gRPC messages this process has sent (encoded).
pub static SENT_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter("etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients.")
});

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("a valid metric name")
}

/// Counts a received message of `bytes` (the JSON gateway's requests).
pub fn count_received(bytes: usize) {
    RECEIVED_BYTES.inc_by(bytes as u64);
}

/// Counts a sent message of `bytes` (the JSON gateway's answers).
pub fn count_sent(bytes: usize) {
    SENT_BYTES.inc_by(bytes as u64);
}

/// prost's codec for `T` out and `U` in, counting both ways.
#[derive(Debug, Clone)]
pub struct CountingCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for CountingCodec<T, U> {
    fn default() -> Self {
        CountingCodec { _messages: PhantomData }
    }
}

impl<T, U> Codec for CountingCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = CountingEncoder<T>;
    type Decoder = CountingDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        CountingEncoder(ProstEncoder::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CountingDecoder(ProstDecoder::default())
    }
}

/// prost's encoder, counting each message's encoded length.
#[derive(Debug)]
pub struct CountingEncoder<T>(ProstEncoder<T>);

impl<T: prost::Message> Encoder for CountingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // What the encoder wrote, from the buffer's room before and after: a
        // second `encoded_len` walk of a large answer would cost more.
        let room = bytes::BufMut::remaining_mut(dst);
        let result = self.0.encode(item, dst);
        count_sent(room - bytes::BufMut::remaining_mut(dst));
        result
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// prost's decoder, counting each message's bytes (the buffer holds exactly one).
#[derive(Debug)]
pub struct CountingDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for CountingDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        count_received(bytes::Buf::remaining(src));
        self.0.decode(src)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
