//! Server-side encryption: the headers of SSE-S3 and SSE-KMS on every request that creates
//! an object, and the check of a named KMS key before the first write.
//!
//! Amazon S3 refuses a write under a KMS key it cannot use, but S3-compatible stores may
//! accept any key id (moto stores it as given): a `GenerateDataKey` under the key, what S3
//! itself asks of KMS for each write, tells a missing or disabled key before anything is
//! written.

use aws_sdk_kms::error::ProvideErrorMetadata as _;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::types::ServerSideEncryption as Sse;
use service_backup_core::{Error, ErrorKind, Result};

use crate::settings::ServerSideEncryption;
use crate::store::Store;

/// The answers of KMS that say the key cannot be used, whoever asks.
const KEY_UNUSABLE: &[&str] = &[
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "InvalidKeyUsageException",
    "InvalidArnException",
];

/// `request` with the encryption headers of `sse`.
fn put_headers(
    request: PutObjectFluentBuilder,
    sse: Option<&ServerSideEncryption>,
) -> PutObjectFluentBuilder {
    match sse {
        None => request,
        Some(ServerSideEncryption::Aes256) => request.server_side_encryption(Sse::Aes256),
        Some(ServerSideEncryption::Kms { key_id }) => request
            .server_side_encryption(Sse::AwsKms)
            .set_ssekms_key_id(key_id.clone()),
    }
}

/// `request` with the encryption headers of `sse` (the parts inherit them).
fn multipart_headers(
    request: CreateMultipartUploadFluentBuilder,
    sse: Option<&ServerSideEncryption>,
) -> CreateMultipartUploadFluentBuilder {
    match sse {
        None => request,
        Some(ServerSideEncryption::Aes256) => request.server_side_encryption(Sse::Aes256),
        Some(ServerSideEncryption::Kms { key_id }) => request
            .server_side_encryption(Sse::AwsKms)
            .set_ssekms_key_id(key_id.clone()),
    }
}

impl Store {
    /// `request` with this store's encryption headers.
    pub(crate) fn encrypted_put(&self, request: PutObjectFluentBuilder) -> PutObjectFluentBuilder {
        put_headers(request, self.sse.as_ref())
    }

    /// `request` with this store's encryption headers (the parts inherit them).
    pub(crate) fn encrypted_multipart(
        &self,
        request: CreateMultipartUploadFluentBuilder,
    ) -> CreateMultipartUploadFluentBuilder {
        multipart_headers(request, self.sse.as_ref())
    }

    /// Checks the KMS key of SSE-KMS once, before the first write; a key KMS says is
    /// missing or unusable fails every write. An answer that says nothing about the key
    /// (access denied, as under a policy that allows KMS only through S3; no KMS at the
    /// endpoint) is logged and the writes go on: S3 itself then judges the key.
    pub(crate) async fn check_kms_key(&self) -> Result<()> {
        let (Some(kms), Some(ServerSideEncryption::Kms { key_id: Some(key) })) =
            (&self.kms, &self.sse)
        else {
            return Ok(());
        };
        self.kms_checked
            .get_or_try_init(|| async {
                let answer = tokio::time::timeout(
                    self.request_timeout,
                    kms.generate_data_key()
                        .key_id(key)
                        .key_spec(DataKeySpec::Aes256)
                        .send(),
                )
                .await;
                let err = match answer {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => e,
                    Err(_) => {
                        tracing::warn!(bucket = %self.bucket, "KMS did not answer the check of kms_key_id in time; S3 will judge the key");
                        return Ok(());
                    }
                };
                let code = err.code().unwrap_or_default().to_string();
                if KEY_UNUSABLE.contains(&code.as_str()) {
                    let said = err.message().map(|m| format!(": {m}")).unwrap_or_default();
                    return Err(Error::new(
                        ErrorKind::Destination,
                        format!(
                            "s3 bucket {}: the KMS key {key} of server_side_encryption aws:kms cannot be used: {code}{said}",
                            self.bucket
                        ),
                    )
                    .with_hint(format!(
                        "set kms_key_id to the id, ARN or alias of an enabled KMS key in region {} (aws kms list-keys), or leave kms_key_id out for the account's aws/s3 key",
                        self.region()
                    )));
                }
                tracing::warn!(
                    bucket = %self.bucket,
                    reason = %crate::error::chain(&err),
                    "could not check kms_key_id with KMS; S3 will judge the key"
                );
                Ok(())
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of_put(sse: Option<&ServerSideEncryption>) -> (Option<Sse>, Option<String>) {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        let request = put_headers(client.put_object(), sse);
        (
            request.get_server_side_encryption().clone(),
            request.get_ssekms_key_id().clone(),
        )
    }

    #[test]
    fn each_setting_asks_for_its_encryption() {
        assert_eq!(headers_of_put(None), (None, None));
        assert_eq!(
            headers_of_put(Some(&ServerSideEncryption::Aes256)),
            (Some(Sse::Aes256), None)
        );
        assert_eq!(
            headers_of_put(Some(&ServerSideEncryption::Kms { key_id: None })),
            (Some(Sse::AwsKms), None)
        );
        assert_eq!(
            headers_of_put(Some(&ServerSideEncryption::Kms {
                key_id: Some("alias/backups".into())
            })),
            (Some(Sse::AwsKms), Some("alias/backups".into()))
        );
    }
}
