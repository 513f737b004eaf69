//! The sealed-token format: what a token is bound to ([`Binding`], the additional
//! authenticated data) and its one stored form ([`SealedToken`]). Only `crypto` reads or
//! writes its fields.

use aws_lc_rs::aead::{AES_256_GCM, NONCE_LEN};

use super::{CryptoError, Purpose};

/// What a sealed token is bound to: it decrypts only for this grant.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The store's stable name (`TOKEN_BINDING`), not the table's physical name.
    pub store: &'a str,
    pub sub: &'a str,
    pub client_id: &'a str,
}

impl Binding<'_> {
    /// Length-prefixed fields, so no two different bindings share an encoding; a
    /// described token's details come last, prefixed the same way.
    pub(super) fn aad(&self, purpose: Purpose, version: u8, details: Option<&[u8]>) -> Vec<u8> {
        let details_len = details.map_or(0, <[u8]>::len);
        let mut aad = Vec::with_capacity(64 + self.store.len() + self.sub.len() + self.client_id.len() + details_len);
        aad.extend_from_slice(purpose.as_str().as_bytes());
        aad.push(version);
        for field in [self.store.as_bytes(), self.sub.as_bytes(), self.client_id.as_bytes()]
            .into_iter()
            .chain(details)
        {
            aad.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad
    }
}

/// A token at rest: wrapped data key, nonce, ciphertext with tag, format version.
/// Its fields are this module's alone; the store keeps [`SealedToken::to_bytes`] as one
/// opaque value and reads it back with [`SealedToken::from_bytes`].
#[derive(Clone, PartialEq, Eq)]
pub struct SealedToken {
    pub(super) version: u8,
    pub(super) wrapped_key: Vec<u8>,
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) ciphertext: Vec<u8>,
}

impl SealedToken {
    /// Its format version ([`super::FORMAT_VERSION`] or [`super::DESCRIBED_FORMAT_VERSION`]).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The data key as KMS wrapped it (it names the KMS key; not a secret).
    pub fn wrapped_key(&self) -> &[u8] {
        &self.wrapped_key
    }

    /// The one stored form: `version ‖ len(wrapped key) as u16 BE ‖ wrapped key ‖ nonce ‖
    /// ciphertext with tag`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let key_len = u16::try_from(self.wrapped_key.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(3 + self.wrapped_key.len() + NONCE_LEN + self.ciphertext.len());
        out.push(self.version);
        out.extend_from_slice(&key_len.to_be_bytes());
        out.extend_from_slice(&self.wrapped_key[..usize::from(key_len)]);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Reads the stored form back; any other shape is [`CryptoError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let (&version, rest) = bytes.split_first().ok_or(CryptoError::Malformed)?;
        let (len, rest) = rest.split_at_checked(2).ok_or(CryptoError::Malformed)?;
        let key_len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (wrapped_key, rest) = rest.split_at_checked(key_len).ok_or(CryptoError::Malformed)?;
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN).ok_or(CryptoError::Malformed)?;
        if wrapped_key.is_empty() || ciphertext.len() < AES_256_GCM.tag_len() {
            return Err(CryptoError::Malformed);
        }
        Ok(Self {
            version,
            wrapped_key: wrapped_key.to_vec(),
            nonce: nonce.try_into().map_err(|_| CryptoError::Malformed)?,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

impl std::fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedToken")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
