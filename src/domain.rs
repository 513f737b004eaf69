//! Domain types, parsed once at the edge ("parse, don't validate"): deeper code never
//! sees a raw `String` where one of these belongs.

use std::collections::BTreeSet;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// Why a value from outside was refused. The message names the field, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub &'static str);

/// Google's stable, unique user id (the ID token's `sub`). Email is not a key: it can change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GoogleSubject(String);

impl GoogleSubject {
    /// Google documents `sub` as case-sensitive ASCII of at most 255 characters.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError("sub must be 1 to 255 printable ASCII characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GoogleSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The largest server auth code we accept. Google's are under 100 characters; the bound
/// keeps garbage from reaching Google or our logs.
pub const MAX_AUTH_CODE_LEN: usize = 512;

/// A one-time server auth code from the app. Secret: its `Debug` is redacted.
#[derive(Debug, Clone)]
pub struct AuthCode(SecretString);

impl AuthCode {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() {
            return Err(ParseError("authCode is missing or empty"));
        }
        if raw.len() > MAX_AUTH_CODE_LEN {
            return Err(ParseError("authCode is too long"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError("authCode must be printable ASCII"));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The app platform that obtained the code; it decides the `redirect_uri` Google expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Platform {
    #[default]
    Android,
    Ios,
    Web,
}

impl Platform {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "android" => Ok(Self::Android),
            "ios" => Ok(Self::Ios),
            "web" => Ok(Self::Web),
            _ => Err(ParseError("platform must be one of android, ios, web")),
        }
    }

    /// As the app sends it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Android => "android",
            Self::Ios => "ios",
            Self::Web => "web",
        }
    }

    /// Installed apps exchange with an empty `redirect_uri`; the Google Identity Services
    /// code client in popup mode uses the literal `postmessage`.
    pub fn redirect_uri(self) -> &'static str {
        match self {
            Self::Android | Self::Ios => "",
            Self::Web => "postmessage",
        }
    }
}

/// The longest `redirectUri` accepted.
pub const MAX_REDIRECT_URI_LEN: usize = 512;

/// The `redirect_uri` a web app's code was issued for, when it is not the platform's: the
/// literal `postmessage` (the GIS popup), or an absolute `https` URL (`http` only on a
/// loopback host), as Google's redirect flow has it. Whether it is one the deployment
/// allows (`ALLOWED_REDIRECT_URIS`) is the sign-in's to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

impl RedirectUri {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "redirectUri must be postmessage or an absolute https URL of at most 512 bytes";
        if raw == "postmessage" {
            return Ok(Self(raw.to_owned()));
        }
        // As written, not as a URL parser would mend it (`HTTPS:`, `https:host`).
        let written_whole = raw.starts_with("https://") || raw.starts_with("http://");
        if !written_whole || raw.len() > MAX_REDIRECT_URI_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError(WHAT));
        }
        let url = url::Url::parse(raw).map_err(|_| ParseError(WHAT))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        // Google refuses a fragment or user info in a redirect URI.
        if !scheme_ok || url.host().is_none() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(ParseError(WHAT));
        }
        Ok(Self(raw.to_owned()))
    }

    /// As the app sent it: Google compares it with the authorization request's, byte for
    /// byte.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A PKCE `code_verifier` (RFC 7636 §4.1): 43 to 128 characters of `[A-Za-z0-9-._~]`. A
/// secret: it goes to Google's token endpoint and nowhere else; its `Debug` is redacted.
#[derive(Debug, Clone)]
pub struct CodeVerifier(SecretString);

impl CodeVerifier {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if !(43..=128).contains(&raw.len()) || !raw.bytes().all(unreserved) {
            return Err(ParseError(
                "codeVerifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_', '~'",
            ));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The largest `idToken` an app may send: Google's are about 1.2 KiB.
pub const MAX_APP_ID_TOKEN_LEN: usize = 4 * 1024;

/// The ID token an app sends beside its code (`idToken`: Credential Manager's, GIS's or
/// `GIDSignIn`'s, audience our web client id): a compact JWT, three base64url parts, of at
/// most 4 KiB. Only its shape is checked here; the sign-in verifies it (DESIGN §6) before
/// the code goes to Google. A credential: its `Debug` is redacted.
#[derive(Debug, Clone)]
pub struct AppIdToken(SecretString);

impl AppIdToken {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let base64url = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let parts: Vec<&str> = raw.split('.').collect();
        if raw.len() > MAX_APP_ID_TOKEN_LEN || parts.len() != 3 || !parts.iter().all(|p| base64url(p)) {
            return Err(ParseError(
                "idToken must be a compact JWT (three base64url parts) of at most 4 KiB",
            ));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The `drive.appdata` scope the offline job needs to list the app's folder.
pub const DRIVE_APPDATA_SCOPE: &str = "https://www.googleapis.com/auth/drive.appdata";

/// Granted OAuth scopes. Partial consent is normal, so this is whatever Google says.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses Google's space-delimited `scope` string (RFC 6749 §3.3).
    pub fn from_space_delimited(raw: &str) -> Self {
        Self(raw.split_ascii_whitespace().map(str::to_owned).collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// The scopes of `self` that `granted` lacks, in order.
    pub fn missing_from(&self, granted: &Self) -> Vec<String> {
        self.0.difference(&granted.0).cloned().collect()
    }

    pub fn union(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<S: Into<String>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(items: I) -> Self {
        Self(items.into_iter().map(Into::into).collect())
    }
}

/// An email address. Personal data: its `Debug` is redacted so it never reaches a log.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn new(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email([redacted])")
    }
}

/// The profile claims of a verified ID token. `email` is present only when Google says
/// it is verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub email: Option<Email>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
}

/// An OAuth refresh token. Secret.
#[derive(Debug, Clone)]
pub struct RefreshToken(SecretString);

impl RefreshToken {
    pub fn new(raw: String) -> Self {
        Self(SecretString::from(raw))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// What Google's `token-revoked` events name a refresh token by, kept beside the sealed
/// token so an event finds its grant with one index lookup: one-way digests only, never
/// a character of the token. Google sends either the token's first 16 characters
/// (`prefix`), kept here as the first 16 bytes of their SHA-256, or
/// `hash_base64_sha512_sha512`, kept as its 64 bytes. Bytes, not text: every byte of a
/// grant item is billed on each of the job's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDigests {
    /// The first [`PREFIX_DIGEST_BYTES`] of SHA-256(the token's first 16 characters).
    pub prefix: Vec<u8>,
    /// SHA-512(SHA-512(token)): the 64 bytes Google's identifier is the base64 of.
    pub double_sha512: Vec<u8>,
}

/// How much of the prefix's SHA-256 is kept: 128 bits, which no two tokens share by chance.
pub const PREFIX_DIGEST_BYTES: usize = 16;

fn prefix_digest(prefix: &str) -> Vec<u8> {
    use aws_lc_rs::digest::{SHA256, digest};
    digest(&SHA256, prefix.as_bytes()).as_ref()[..PREFIX_DIGEST_BYTES].to_vec()
}

/// How many leading characters Google's `prefix` identifier holds.
pub const TOKEN_PREFIX_CHARS: usize = 16;

impl TokenDigests {
    pub fn of(token: &RefreshToken) -> Self {
        use aws_lc_rs::digest::{SHA512, digest};
        let raw = token.expose_secret();
        let prefix: String = raw.chars().take(TOKEN_PREFIX_CHARS).collect();
        let inner = digest(&SHA512, raw.as_bytes());
        Self {
            prefix: prefix_digest(&prefix),
            double_sha512: digest(&SHA512, inner.as_ref()).as_ref().to_vec(),
        }
    }
}

/// A `token-revoked` event's identifier, as the digest it is looked up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    /// [`TokenDigests::prefix`] of the prefix Google sent.
    Prefix(Vec<u8>),
    /// [`TokenDigests::double_sha512`]: the bytes Google's base64 spells.
    DoubleSha512(Vec<u8>),
}

impl TokenLookup {
    /// Reads Google's `token_identifier_alg` and `token`; `None` for an algorithm we do
    /// not know or an identifier that cannot be one of its kind.
    pub fn from_identifier(alg: &str, token: &str) -> Option<Self> {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        match alg {
            "prefix" if token.chars().count() == TOKEN_PREFIX_CHARS => Some(Self::Prefix(prefix_digest(token))),
            "hash_base64_sha512_sha512" => {
                // Any base64 spelling of the 64 bytes names the same token.
                let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|engine| engine.decode(token.trim()).ok())
                    .filter(|b| b.len() == 64)?;
                Some(Self::DoubleSha512(bytes))
            }
            _ => None,
        }
    }
}

/// An OAuth access token. Secret.
#[derive(Debug, Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    pub fn new(raw: String) -> Self {
        Self(SecretString::from(raw))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_code_rejects_empty_long_and_non_printable() {
        assert!(AuthCode::parse("").is_err());
        assert!(AuthCode::parse(&"a".repeat(MAX_AUTH_CODE_LEN + 1)).is_err());
        assert!(AuthCode::parse("4/0Ab c").is_err());
        assert!(AuthCode::parse("4/0Ab\u{7f}").is_err());
        assert!(AuthCode::parse("4/0AeanS0b-x_y.z").is_ok());
    }

    #[test]
    fn auth_code_debug_never_shows_the_code() {
        let code = AuthCode::parse("4/0-very-secret").map_err(|e| e.0);
        assert!(!format!("{code:?}").contains("very-secret"));
    }

    #[test]
    fn redirect_uris_are_postmessage_or_https_or_loopback_http() {
        for ok in [
            "postmessage",
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?x=1",
            "http://localhost:8080/cb",
            "http://127.0.0.1:5173/",
            "http://[::1]/cb",
        ] {
            assert_eq!(RedirectUri::parse(ok).map(|u| u.as_str().to_owned()), Ok(ok.to_owned()));
        }
        let long = format!("https://app.example.com/{}", "a".repeat(MAX_REDIRECT_URI_LEN));
        for bad in [
            "",
            "PostMessage",
            "http://app.example.com/cb",
            "https://",
            "https://app.example.com/cb#frag",
            "https://user@app.example.com/cb",
            "javascript:alert(1)",
            "com.example.app:/oauth2redirect",
            "/callback",
            "HTTPS://app.example.com/cb",
            "https:app.example.com/cb",
            "https:/app.example.com/cb",
            "https://app.example.com/a b",
            long.as_str(),
        ] {
            let refused = RedirectUri::parse(bad).map(|_| ()).map_err(|e| e.0);
            assert!(refused.is_err_and(|m| m.starts_with("redirectUri must be")), "{bad}");
        }
    }

    #[test]
    fn app_id_tokens_are_compact_jwts_of_at_most_4_kib_and_redacted() {
        let part = "eyJhbGciOiJSUzI1NiJ9";
        assert!(AppIdToken::parse(&format!("{part}.{part}.sig-_0")).is_ok());
        let long = format!("{part}.{}.sig", "a".repeat(MAX_APP_ID_TOKEN_LEN));
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b.c=",
            "a.b.c d",
            "a.b+.c",
            long.as_str(),
        ] {
            let refused = AppIdToken::parse(bad).map(|_| ()).map_err(|e| e.0);
            assert!(refused.is_err_and(|m| m.starts_with("idToken must be")), "{bad}");
        }
        let shown = AppIdToken::parse("s3cret.s3cret.s3cret")
            .map(|t| format!("{t:?}"))
            .unwrap_or_default();
        assert!(!shown.is_empty() && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn code_verifiers_are_43_to_128_unreserved_characters_and_redacted() {
        for ok in ["a".repeat(43), "Az09-._~".repeat(16)] {
            assert!(CodeVerifier::parse(&ok).is_ok(), "{ok}");
        }
        for bad in [
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+", "a".repeat(42)),
            format!("{} ", "a".repeat(43)),
        ] {
            assert_eq!(
                CodeVerifier::parse(&bad)
                    .map(|_| ())
                    .map_err(|e| e.0.contains("codeVerifier")),
                Err(true),
                "{bad}"
            );
        }
        let secret = "s3cr3t-verifier-".repeat(3);
        let verifier = CodeVerifier::parse(&secret)
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        assert!(!verifier.contains("s3cr3t"), "{verifier}");
    }

    #[test]
    fn platforms_pick_googles_redirect_uris() {
        assert_eq!(Platform::parse("web").map(Platform::redirect_uri), Ok("postmessage"));
        assert_eq!(Platform::parse("ios").map(Platform::redirect_uri), Ok(""));
        assert_eq!(Platform::parse("android").map(Platform::redirect_uri), Ok(""));
        assert!(Platform::parse("windows").is_err());
    }

    #[test]
    fn scopes_parse_space_delimited_and_union() {
        let a = Scopes::from_space_delimited("openid  email\thttps://www.googleapis.com/auth/drive.appdata");
        assert!(a.contains(DRIVE_APPDATA_SCOPE));
        let b = Scopes::from_space_delimited("profile");
        assert_eq!(a.union(&b).iter().count(), 4);
    }

    #[test]
    fn subject_must_be_printable_ascii() {
        assert!(GoogleSubject::parse("110169484474386276334").is_ok());
        assert!(GoogleSubject::parse("").is_err());
        assert!(GoogleSubject::parse("a b").is_err());
        assert!(GoogleSubject::parse(&"1".repeat(256)).is_err());
    }

    #[test]
    fn email_debug_is_redacted() {
        let email = Email::new("ada@example.com".into());
        assert!(!format!("{email:?}").contains("ada"));
    }
}
