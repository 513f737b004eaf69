//! Test-only RSA signing keys and hand-rolled JWS, so tests can also mint the forged
//! tokens (alg none, HS256 keyed with the public key, flipped bits) a real attacker would.
//! These keys are generated at start-up, live in memory only and sign nothing real.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// One test-only signing key.
pub struct SigningKey {
    pub kid: String,
    pair: RsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// How to spoil an ID token, for the verification tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forgery {
    #[default]
    None,
    /// `{"alg": "none"}` and an empty signature.
    AlgNone,
    /// HS256 with the RSA public key as the HMAC secret (the classic key-confusion attack).
    Hs256WithPublicKey,
    /// A valid RS256 signature with one bit flipped.
    FlippedSignatureBit,
    /// Signed by a key that is not in the JWKS, under a `kid` that is not either.
    UnknownKid,
    /// Signed by a key that is not in the JWKS, under the `kid` of one that is.
    ForeignKey,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    pub fn generate(kid: String) -> anyhow::Result<Self> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
        Ok(Self { kid, pair })
    }

    /// The private half as PEM (PKCS#8 `PRIVATE KEY`), as a service-account key file
    /// holds it.
    pub fn private_pem(&self) -> anyhow::Result<String> {
        use aws_lc_rs::encoding::AsDer as _;
        let der = self
            .pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("the key does not encode"))?;
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        Ok(format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        ))
    }

    /// The public half as a JWK, the way Google's JWKS lists it.
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        })
    }

    fn rs256(&self, input: &str) -> anyhow::Result<Vec<u8>> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
        Ok(signature)
    }

    /// Signs `claims` as a compact JWS, spoiled as `forgery` says.
    pub fn sign(&self, claims: &Value, forgery: Forgery) -> anyhow::Result<String> {
        self.sign_typed(claims, forgery, "JWT")
    }

    /// [`Self::sign`] with the header's `typ` (`secevent+jwt` for a Security Event Token).
    pub fn sign_typed(&self, claims: &Value, forgery: Forgery, typ: &str) -> anyhow::Result<String> {
        let (alg, kid) = match forgery {
            Forgery::AlgNone => ("none", self.kid.clone()),
            Forgery::Hs256WithPublicKey => ("HS256", self.kid.clone()),
            Forgery::UnknownKid => ("RS256", format!("{}-unknown", self.kid)),
            Forgery::None | Forgery::FlippedSignatureBit | Forgery::ForeignKey => ("RS256", self.kid.clone()),
        };
        let header = json!({"alg": alg, "kid": kid, "typ": typ});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match forgery {
            Forgery::AlgNone => Vec::new(),
            Forgery::Hs256WithPublicKey => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, self.pair.public_key().as_ref());
                hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
            Forgery::UnknownKid | Forgery::ForeignKey => SigningKey::generate(kid)?.rs256(&input)?,
            Forgery::FlippedSignatureBit => {
                let mut signature = self.rs256(&input)?;
                if let Some(byte) = signature.get_mut(10) {
                    *byte ^= 0x01;
                }
                signature
            }
            Forgery::None => self.rs256(&input)?,
        };
        Ok(format!("{input}.{}", b64(&signature)))
    }
}
