//! The ports every use case runs over, named once.
//!
//! A use case (`SignIn`, `DeleteGrant`, `RiscReceiver`, `AccessTokens`, `OfflineJob`) has
//! one type parameter, the platform it runs on, whose [`Ports`] (associated types) are
//! what it calls (STYLE §3:
//! ports stay generic, so a test can put a fake behind any of them). The bounds live here,
//! once, instead of on every impl block.
//!
//! [`Aws`] is the platform the functions run on: Google over HTTP, DynamoDB, KMS, Secrets
//! Manager. Its parameters are the parts a test or a benchmark swaps, each defaulting to
//! production's: the key provider (tests count or refuse KMS calls), the client-secret
//! cache's clock (tests move it past the TTL), the job's store (benchmarks measure the
//! job itself on an in-memory one) and the use cases' clock (tests turn the quota day
//! over). `Aws` with no parameters is production.

use std::fmt::Debug;
use std::marker::PhantomData;

use crate::clock::{Clock, SystemClock};
use crate::crypto::{KeyProvider, KmsKeyProvider};
use crate::google::{
    CachedClientSecret, ClientSecrets, DriveApi, GoogleIdTokenVerifier, HttpDrive, HttpJwksFetcher, HttpTokenEndpoint,
    SecretsManagerSource, TokenEndpoint, VerifyIdToken,
};
use crate::store::{AccessStore, DeletionStore, DynamoStore, JobStore, RiscStore, SignInStore};

/// The ports of every use case.
pub trait Ports: Send + Sync + 'static {
    /// Google's token endpoint: code exchange, refresh, revocation.
    type Tokens: TokenEndpoint + Debug;
    /// Google ID-token verification (DESIGN §6).
    type IdTokens: VerifyIdToken + Clone + Debug;
    /// Drive v3.
    type Drive: DriveApi + Debug;
    /// The grants and state tables, as sign-in, deletion, RISC and the access-token
    /// function use them.
    type Store: SignInStore + DeletionStore + RiscStore + AccessStore + Clone + Debug;
    /// The tables as the offline job uses them.
    type JobStore: JobStore + Debug;
    /// Data keys (KMS).
    type Keys: KeyProvider + Clone + Debug;
    /// Google's client id and secret.
    type Secrets: ClientSecrets + Clone + Debug;
    /// What the use cases take the time from.
    type Clock: Clock + Clone + Debug + 'static;
}

/// The platform the functions run on; with no parameters, production. `K` is the key
/// provider, `SC` the client-secret cache's clock, `J` the job's store, `C` the use
/// cases' clock.
#[derive(Debug)]
pub struct Aws<K = KmsKeyProvider, SC = SystemClock, J = DynamoStore, C = SystemClock> {
    keys: PhantomData<fn() -> K>,
    cache_clock: PhantomData<fn() -> SC>,
    job_store: PhantomData<fn() -> J>,
    clock: PhantomData<fn() -> C>,
}

/// What production runs.
pub type Production = Aws;

/// The client-secret cache (Secrets Manager), on the clock that ages it.
pub type Secrets<C = SystemClock> = CachedClientSecret<SecretsManagerSource, C>;

/// Google ID-token verification over HTTP, on the clock its key cache ages by.
pub type IdTokens<C = SystemClock> = GoogleIdTokenVerifier<HttpJwksFetcher, C>;

/// A key provider [`Aws`] can run on: KMS, or a test's wrapper of it.
pub trait AnyKeys: KeyProvider + Clone + Debug + 'static {}
impl<K: KeyProvider + Clone + Debug + 'static> AnyKeys for K {}

/// A clock [`Aws`] can run on: the system's, or a test's.
pub trait AnyClock: Clock + Clone + Debug + 'static {}
impl<C: Clock + Clone + Debug + 'static> AnyClock for C {}

/// A job store [`Aws`] can run on: DynamoDB, or a benchmark's in-memory one.
pub trait AnyJobStore: JobStore + Debug + 'static {}
impl<S: JobStore + Debug + 'static> AnyJobStore for S {}

impl<K: AnyKeys, SC: AnyClock, J: AnyJobStore, C: AnyClock> Ports for Aws<K, SC, J, C> {
    type Tokens = HttpTokenEndpoint;
    type IdTokens = IdTokens<SC>;
    type Drive = HttpDrive;
    type Store = DynamoStore;
    type JobStore = J;
    type Keys = K;
    type Secrets = Secrets<SC>;
    type Clock = C;
}
