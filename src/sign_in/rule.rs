//! What a sign-in does to the stored grant, decided without reading it (DESIGN §1): the
//! sign-in stays at two round trips, so the rule is a condition on the write, and a
//! refused write says what it found. One pure function, [`next_write`], steps through it,
//! and [`store_grant`] makes each write it names through the store, which turns a
//! [`GrantWrite`] into one conditional write (`store::dynamo::sign_in`).
//!
//! - A new refresh token wins, whatever is stored: put a whole new grant when there is
//!   none (a first consent, the usual case), else replace the stored token, take this
//!   code's scopes, and make the grant active again with no failures (over a revoked or
//!   deleted grant too: the user consented again).
//! - Without one (the user consented before) the stored token is kept, and so is the grant
//!   as it is: only an active grant that holds a token is updated, and it records the union
//!   of its scopes and this code's (Google may list only what this request asked for). The
//!   first try expects the stored scopes to be exactly this code's — the usual case, so the
//!   answer's scopes are known without a read; a refusal returns the stored grant, and the
//!   next try writes the union at that grant's version.
//! - A grant Google held back until its user signed in again (`invalid_rapt`) keeps its
//!   token: this sign-in is that, so a sign-in without a new token makes it active again.
//! - No usable stored token and none came: nothing is written (`reconsent_required`).

use std::time::Duration;

use crate::domain::Scopes;
use crate::store::{
    ClaimKey, Expect, GrantStatus, GrantWrite, Refused, SignInGrant, SignInStore, SignInStored, StoreError,
};

/// How often a write is tried when the grant keeps changing under it.
const CONFLICT_RETRIES: usize = 5;

/// Stores a sign-in's grant by the rule, recording its outcome on the claim with the
/// write that succeeds: usually the first, so two round trips in all with the claim.
pub async fn store_grant<S: SignInStore>(
    store: &S,
    claim: &ClaimKey,
    grant: &SignInGrant,
    now: u64,
    window: Duration,
) -> Result<SignInStored, StoreError> {
    let mut last: Option<(GrantWrite, Refused)> = None;
    for _ in 0..=CONFLICT_RETRIES {
        let with_token = grant.refresh_token.is_some();
        let write = match next_write(with_token, &grant.scopes, last.as_ref().map(|(w, r)| (w, r.clone()))) {
            Next::Write(write) => write,
            Next::NoRefreshToken => return Ok(SignInStored::NoRefreshToken),
        };
        match store.write_grant(claim, &write, grant, now, window).await? {
            Ok(()) => {
                let scopes = write.scopes(grant).clone();
                return Ok(SignInStored::Stored { scopes });
            }
            Err(refused) => last = Some((write, refused)),
        }
    }
    Err(StoreError::Conflict)
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Write(GrantWrite),
    /// No token came and no usable one is stored: write nothing; consent is needed again.
    NoRefreshToken,
}

/// The write to try after `last` was refused (`None`: the first one), for a sign-in that
/// brought a refresh token or not and these `scopes`.
pub fn next_write(with_token: bool, scopes: &Scopes, last: Option<(&GrantWrite, Refused)>) -> Next {
    let Some((last, refused)) = last else {
        return Next::Write(if with_token {
            GrantWrite::PutNew
        } else {
            GrantWrite::KeepToken {
                expect: Expect::Scopes(scopes.clone()),
                scopes: scopes.clone(),
                revives: None,
            }
        });
    };
    match (last, refused) {
        // A grant is stored already, or the put met another write: replace the token, and
        // end the stored generation's cached access token when the refusal says which.
        (GrantWrite::PutNew, Refused::Condition(stored)) => Next::Write(GrantWrite::ReplaceToken {
            ends: stored.map(|g| g.token_gen),
        }),
        (GrantWrite::PutNew, Refused::Conflict) => Next::Write(GrantWrite::ReplaceToken { ends: None }),
        (GrantWrite::ReplaceToken { ends }, _) => Next::Write(GrantWrite::ReplaceToken { ends: *ends }),
        (keep @ GrantWrite::KeepToken { .. }, Refused::Conflict) => Next::Write(keep.clone()),
        (GrantWrite::KeepToken { .. }, Refused::Condition(None)) => Next::NoRefreshToken,
        (GrantWrite::KeepToken { .. }, Refused::Condition(Some(stored))) => {
            if stored.refresh_token.is_none() || !(stored.status == GrantStatus::Active || stored.awaits_sign_in()) {
                return Next::NoRefreshToken;
            }
            // Never overwrite a stored refresh token with an absent one; keep the union
            // of what it carries and what this code brings.
            Next::Write(GrantWrite::KeepToken {
                expect: Expect::Version(stored.version),
                scopes: stored.scopes.union(scopes),
                revives: stored.awaits_sign_in().then_some(stored.token_gen),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealedToken;
    use crate::domain::{GoogleSubject, Profile};
    use crate::store::Grant;

    fn scopes(s: &str) -> Scopes {
        Scopes::from_space_delimited(s)
    }

    fn stored(status: GrantStatus, with_token: bool, scopes_held: &str) -> Grant {
        // The stored form's smallest valid sealed token: version, key length, key, nonce,
        // and a tag's worth of ciphertext.
        let mut bytes = vec![1, 0, 1, 7];
        bytes.extend([0; 12 + 16]);
        let sealed = SealedToken::from_bytes(&bytes).expect("sealed form");
        let mut grant = Grant::new_active(
            GoogleSubject::parse("1").expect("sub"),
            "client".into(),
            scopes(scopes_held),
            crate::crypto::NewRefreshToken {
                sealed,
                digests: crate::domain::TokenDigests::of(&crate::domain::RefreshToken::new("1//t".into())),
            },
            Profile::default(),
            false,
            1_000,
        );
        grant.status = status;
        grant.version = 7;
        if !with_token {
            grant.refresh_token = None;
        }
        grant
    }

    #[test]
    fn each_case_of_a_sign_in_over_a_stored_grant_writes_what_the_rule_says() {
        let awaiting_sign_in = {
            let mut g = stored(GrantStatus::ReconsentRequired, true, "openid");
            g.status_reason = Some("invalid_grant:invalid_rapt".into());
            g
        };
        let code = scopes("openid drive");
        let keep_first = GrantWrite::KeepToken {
            expect: Expect::Scopes(code.clone()),
            scopes: code.clone(),
            revives: None,
        };
        let refused = |g: Option<Grant>| Refused::Condition(g.map(Box::new));
        // (case, a new token came, the last write and how it was refused, what comes next)
        type Row = (&'static str, bool, Option<(GrantWrite, Refused)>, Next);
        let rows: Vec<Row> = vec![
            ("a new token, first try", true, None, Next::Write(GrantWrite::PutNew)),
            (
                "a new token over a stored grant",
                true,
                Some((
                    GrantWrite::PutNew,
                    refused(Some(stored(GrantStatus::Active, true, "openid"))),
                )),
                Next::Write(GrantWrite::ReplaceToken { ends: Some(1) }),
            ),
            (
                "a new token over a revoked grant",
                true,
                Some((
                    GrantWrite::PutNew,
                    refused(Some(stored(GrantStatus::Revoked, false, ""))),
                )),
                Next::Write(GrantWrite::ReplaceToken { ends: Some(1) }),
            ),
            (
                "a new token whose put met another write",
                true,
                Some((GrantWrite::PutNew, Refused::Conflict)),
                Next::Write(GrantWrite::ReplaceToken { ends: None }),
            ),
            (
                "a replacement that met another write, again",
                true,
                Some((GrantWrite::ReplaceToken { ends: Some(4) }, Refused::Conflict)),
                Next::Write(GrantWrite::ReplaceToken { ends: Some(4) }),
            ),
            (
                "no token, first try: expect this code's scopes",
                false,
                None,
                Next::Write(keep_first.clone()),
            ),
            (
                "no token, the stored scopes differ: the union at its version",
                false,
                Some((
                    keep_first.clone(),
                    refused(Some(stored(GrantStatus::Active, true, "openid email"))),
                )),
                Next::Write(GrantWrite::KeepToken {
                    expect: Expect::Version(7),
                    scopes: scopes("openid email drive"),
                    revives: None,
                }),
            ),
            (
                "no token, another write at the same moment: the same again",
                false,
                Some((keep_first.clone(), Refused::Conflict)),
                Next::Write(keep_first.clone()),
            ),
            (
                "no token and no grant",
                false,
                Some((keep_first.clone(), refused(None))),
                Next::NoRefreshToken,
            ),
            (
                "no token, the stored grant holds none",
                false,
                Some((
                    keep_first.clone(),
                    refused(Some(stored(GrantStatus::Active, false, "openid"))),
                )),
                Next::NoRefreshToken,
            ),
            (
                "no token, the stored grant is revoked",
                false,
                Some((
                    keep_first.clone(),
                    refused(Some(stored(GrantStatus::Revoked, true, "openid"))),
                )),
                Next::NoRefreshToken,
            ),
            (
                "no token, the stored grant waits for its user to sign in again (invalid_rapt)",
                false,
                Some((keep_first.clone(), refused(Some(awaiting_sign_in.clone())))),
                Next::Write(GrantWrite::KeepToken {
                    expect: Expect::Version(7),
                    scopes: scopes("openid drive"),
                    revives: Some(awaiting_sign_in.token_gen),
                }),
            ),
            (
                "no token, the stored grant is suspended",
                false,
                Some((
                    keep_first.clone(),
                    refused(Some(stored(GrantStatus::Suspended, true, "openid"))),
                )),
                Next::NoRefreshToken,
            ),
        ];
        for (case, with_token, last, expected) in rows {
            let got = next_write(with_token, &code, last.as_ref().map(|(w, r)| (w, r.clone())));
            assert_eq!(got, expected, "{case}");
        }
    }
}
