//! A bound on what is read of an error answer: the SDK reads such a body whole before it
//! parses the error, so a hostile or broken endpoint announcing gigabytes would otherwise
//! be held in memory. Only the first [`ERROR_BODY_CAP`] bytes are read; the error code and
//! message of a real S3 error come first and fit.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The most bytes read of an answer that is not a success.
pub(crate) const ERROR_BODY_CAP: usize = 8 * 1024;

/// Cuts the body of every answer that is not a success to [`ERROR_BODY_CAP`] bytes.
#[derive(Debug)]
pub(crate) struct CapErrorBodies;

impl Intercept for CapErrorBodies {
    fn name(&self) -> &'static str {
        "CapErrorBodies"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        if response.status().is_success() {
            return Ok(());
        }
        let body = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() = SdkBody::from_body_1_x(Capped::new(body, ERROR_BODY_CAP));
        Ok(())
    }
}

/// A body that ends after `left` more bytes, whatever the inner one still has.
struct Capped {
    inner: SdkBody,
    left: usize,
}

impl Capped {
    fn new(inner: SdkBody, cap: usize) -> Self {
        Self { inner, left: cap }
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    data.truncate(self.left);
                    self.left -= data.len();
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                // Trailers are small; passed on as they are.
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Never the announced length: a reader may reserve that much.
        let mut hint = SizeHint::new();
        hint.set_upper(self.left as u64);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn a_long_body_is_cut_at_the_cap() {
        let long = SdkBody::from(vec![b'A'; 100_000]);
        let read = Capped::new(long, 10).collect().await.unwrap().to_bytes();
        assert_eq!(read.as_ref(), b"AAAAAAAAAA");
        let short = SdkBody::from("<Error/>");
        let read = Capped::new(short, 10).collect().await.unwrap().to_bytes();
        assert_eq!(read.as_ref(), b"<Error/>");
    }
}
