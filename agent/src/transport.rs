//! HTTP bodies as every server and client of the agent sends them (the public APIs, the peer
//! port, the agent's own client): whole or streamed from a file. Below the API layer, so that
//! the cluster and the client do not depend on it.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;

/// Response bodies: whole (JSON) or streamed (image data).
pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn whole(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// Chunk size for streamed files.
const STREAM_CHUNK: usize = 256 << 10;

/// A body streaming `file` in chunks (responses and the client's uploads).
pub fn file_body(file: tokio::fs::File) -> Body {
    use tokio::io::AsyncReadExt;
    let chunks = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; STREAM_CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    StreamBody::new(chunks).boxed()
}

/// Streams `file` (`len` bytes) as an `application/octet-stream` response.
pub fn stream_file(file: tokio::fs::File, len: u64) -> Response<Body> {
    let mut r = Response::new(file_body(file));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}
