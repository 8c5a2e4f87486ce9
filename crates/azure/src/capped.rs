//! A bound on what is read of an error answer: the SDK collects such a body whole to
//! parse the error, so a hostile or broken endpoint announcing gigabytes would otherwise be
//! held in memory. Only the first [`ERROR_BODY_CAP`] bytes of an answer that is not a
//! success are passed on.

use async_trait::async_trait;
use azure_core::{HttpClient, Request, Response};
use futures::StreamExt as _;

/// The most bytes read of an answer that is not a success.
pub(crate) const ERROR_BODY_CAP: usize = 8 * 1024;

/// An HTTP client whose error answers are cut to [`ERROR_BODY_CAP`] bytes.
#[derive(Debug)]
pub(crate) struct CappedErrors(pub(crate) reqwest::Client);

#[async_trait]
impl HttpClient for CappedErrors {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        let response = self.0.execute_request(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let (status, headers, body) = response.deconstruct();
        let capped = body.scan(ERROR_BODY_CAP, |left, item| {
            let item = match item {
                Ok(_) if *left == 0 => return futures::future::ready(None),
                Ok(mut bytes) => {
                    bytes.truncate(*left);
                    *left -= bytes.len();
                    Ok(bytes)
                }
                Err(e) => Err(e),
            };
            futures::future::ready(Some(item))
        });
        Ok(Response::new(status, headers, Box::pin(capped)))
    }
}
