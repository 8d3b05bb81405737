//! The protobuf codec with small initial buffers.
//!
//! tonic's default codec starts every stream with two 8 KiB buffers (encode and decode)
//! that live as long as the stream. A controller holds one idle session stream per host, so
//! those buffers were a quarter of its memory per host; here they start at 1 KiB and grow
//! when a large update passes.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial buffer size of a stream's encoder and decoder.
pub const INITIAL_BUFFER: usize = 1024;
/// Encoded bytes after which a streaming encoder yields to the transport (the encode buffer
/// keeps its peak size while the stream lives, so it is kept low).
pub const YIELD_THRESHOLD: usize = 8 * 1024;

/// A prost codec whose buffers start small.
#[derive(Debug, Clone, Copy)]
pub struct SmallCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallCodec<T, U> {
    fn default() -> Self {
        SmallCodec(PhantomData)
    }
}

impl<T, U> Codec for SmallCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD))
    }
}
