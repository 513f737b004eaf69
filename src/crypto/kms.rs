//! The key-management service as a port ([`KeyProvider`]) and its adapter, AWS KMS: data
//! keys generated and unwrapped under the configured key, with the encryption context of
//! the purpose and `TOKEN_BINDING`.

use std::collections::HashMap;

use secrecy::SecretBox;

use super::Purpose;
use crate::upstream::{Upstream, classify_aws};

/// A 256-bit data key in plaintext (zeroed on drop) with its KMS-wrapped form.
pub struct DataKey {
    pub plaintext: SecretBox<[u8; 32]>,
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// Why a key could not be had or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// KMS refused the wrapped key: it was altered, or wrapped under another key/context.
    #[error("the wrapped data key was rejected")]
    Rejected,
    /// The KMS key is disabled, pending deletion or deleted: nothing wrapped under it
    /// opens again (short of an operator re-enabling it).
    #[error("the KMS key is disabled or deleted")]
    Gone,
    #[error(transparent)]
    Upstream(#[from] Upstream),
}

/// The key-management service as a port. A data key is generated for one purpose and
/// unwraps only for it.
pub trait KeyProvider: Send + Sync {
    fn generate_data_key(&self, purpose: Purpose) -> impl Future<Output = Result<DataKey, KeyError>> + Send;
    fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        purpose: Purpose,
    ) -> impl Future<Output = Result<SecretBox<[u8; 32]>, KeyError>> + Send;
}

/// AWS KMS, with an encryption context per purpose so IAM can condition on it.
#[derive(Debug, Clone)]
pub struct KmsKeyProvider {
    client: aws_sdk_kms::Client,
    key_id: String,
    /// Keys tokens were sealed under before a change of key (`PREVIOUS_TOKEN_KEY_IDS`):
    /// still opened, never sealed under.
    previous_key_ids: Vec<String>,
    binding: String,
}

/// The KMS encryption context of a data key: which purpose and which store
/// (`TOKEN_BINDING`).
pub fn encryption_context(purpose: Purpose, binding: &str) -> HashMap<String, String> {
    HashMap::from([
        ("purpose".to_owned(), purpose.as_str().to_owned()),
        ("binding".to_owned(), binding.to_owned()),
    ])
}

impl KmsKeyProvider {
    pub fn new(client: aws_sdk_kms::Client, key_id: String, binding: &str) -> Self {
        Self {
            client,
            key_id,
            previous_key_ids: Vec::new(),
            binding: binding.to_owned(),
        }
    }

    /// Also opens data keys wrapped under these (a change of key in progress).
    #[must_use]
    pub fn with_previous_keys(mut self, key_ids: Vec<String>) -> Self {
        self.previous_key_ids = key_ids;
        self
    }

    /// The key new data keys are wrapped under.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn decrypt_under(
        &self,
        key_id: &str,
        wrapped: &[u8],
        purpose: Purpose,
    ) -> Result<SecretBox<[u8; 32]>, KeyError> {
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
            .set_encryption_context(Some(encryption_context(purpose, &self.binding)))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_invalid_ciphertext_exception() || se.is_incorrect_key_exception() => {
                    KeyError::Rejected
                }
                Some(se)
                    if se.is_disabled_exception()
                        || se.is_kms_invalid_state_exception()
                        || se.is_not_found_exception() =>
                {
                    KeyError::Gone
                }
                _ => classify_aws("kms", &e).into(),
            })?;
        let plaintext = out
            .plaintext()
            .ok_or_else(|| Upstream::misconfigured("kms", "Decrypt answered without a key"))?;
        key_bytes(plaintext.as_ref())
    }
}

fn key_bytes(raw: &[u8]) -> Result<SecretBox<[u8; 32]>, KeyError> {
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| Upstream::misconfigured("kms", "data key is not 256 bits"))?;
    Ok(SecretBox::new(Box::new(bytes)))
}

impl KeyProvider for KmsKeyProvider {
    async fn generate_data_key(&self, purpose: Purpose) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .set_encryption_context(Some(encryption_context(purpose, &self.binding)))
            .send()
            .await
            .map_err(|e| classify_aws("kms", &e))?;
        let (Some(plaintext), Some(wrapped)) = (out.plaintext(), out.ciphertext_blob()) else {
            return Err(Upstream::misconfigured("kms", "GenerateDataKey answered without a key").into());
        };
        Ok(DataKey {
            plaintext: key_bytes(plaintext.as_ref())?,
            wrapped: wrapped.as_ref().to_vec(),
        })
    }

    async fn decrypt_data_key(&self, wrapped: &[u8], purpose: Purpose) -> Result<SecretBox<[u8; 32]>, KeyError> {
        // Always naming the key (KMS best practice): the current one, then any previous.
        let mut result = self.decrypt_under(&self.key_id, wrapped, purpose).await;
        for previous in &self.previous_key_ids {
            if !matches!(result, Err(KeyError::Rejected)) {
                break;
            }
            result = self.decrypt_under(previous, wrapped, purpose).await;
        }
        result
    }
}
