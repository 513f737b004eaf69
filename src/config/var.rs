//! What a variable is, and the one reader of every variable.
//!
//! A [`Var`] is declared once (in `vars/`): its name, what its absence means, the
//! values it accepts (its [`Kind`]) and what it does. [`Var::read`] is the only way a
//! config reads the environment: it trims, applies the default (parsed and checked by the
//! same kind, so a default cannot break its own range), and names the variable in every
//! error — never its value.

use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// Where the variables come from: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }
}

/// What an unset (or blank) variable means.
#[derive(Debug, Clone, Copy)]
pub enum Absent {
    /// Init fails, naming the variable.
    Required,
    /// This value, read as if it had been set.
    Default(&'static str),
    /// Nothing is read; the config does what these words say (`Var::read_optional`).
    Means(&'static str),
}

/// One environment variable, declared once.
#[derive(Debug)]
pub struct Var<K> {
    pub name: &'static str,
    pub absent: Absent,
    pub kind: K,
    /// What it does, as the README's configuration table says it.
    pub doc: &'static str,
}

impl<K: Kind> Var<K> {
    /// The value, or its default; a required variable that is unset is an error.
    pub fn read(&self, env: &impl Env) -> Result<K::Value, ConfigError> {
        match (self.raw(env), self.absent) {
            (Some(raw), _) => self.parse(&raw),
            (None, Absent::Default(raw)) => self.parse(raw),
            (None, Absent::Required | Absent::Means(_)) => Err(ConfigError::Missing(self.name)),
        }
    }

    /// The value when set; `None` when unset (for a variable whose absence `Means`
    /// something the config decides).
    pub fn read_optional(&self, env: &impl Env) -> Result<Option<K::Value>, ConfigError> {
        self.raw(env).map(|raw| self.parse(&raw)).transpose()
    }

    fn raw(&self, env: &impl Env) -> Option<String> {
        env.get(self.name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse(&self, raw: &str) -> Result<K::Value, ConfigError> {
        self.kind
            .parse(raw)
            .map_err(|why| ConfigError::Invalid { name: self.name, why })
    }
}

/// A variable as documentation sees it, whatever its kind.
pub trait Declared: Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn absent(&self) -> Absent;
    fn doc(&self) -> &'static str;
    /// The values it accepts, in words.
    fn accepts(&self) -> String;
    /// Its default, parsed by its own kind: a default outside its range is a defect.
    fn check_default(&self) -> Result<(), ConfigError>;
}

impl<K: Kind + Sync + std::fmt::Debug> Declared for Var<K> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn absent(&self) -> Absent {
        self.absent
    }
    fn doc(&self) -> &'static str {
        self.doc
    }
    fn accepts(&self) -> String {
        self.kind.describe()
    }
    fn check_default(&self) -> Result<(), ConfigError> {
        match self.absent {
            Absent::Default(raw) => self.parse(raw).map(drop),
            Absent::Required | Absent::Means(_) => Ok(()),
        }
    }
}

/// The values a variable accepts, and what it reads as.
pub trait Kind {
    type Value;
    /// The trimmed, non-empty text → the value, or why not (never echoing the text).
    fn parse(&self, raw: &str) -> Result<Self::Value, String>;
    fn describe(&self) -> String;
}

/// Any text.
#[derive(Debug)]
pub struct Text;

impl Kind for Text {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        Ok(raw.to_owned())
    }
    fn describe(&self) -> String {
        "text".into()
    }
}

/// An `http(s)` URL.
#[derive(Debug)]
pub struct Url;

impl Kind for Url {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        let parsed = url::Url::parse(raw).map_err(|_| "not a URL".to_owned())?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err("must be an http(s) URL".into());
        }
        Ok(raw.to_owned())
    }
    fn describe(&self) -> String {
        "an http(s) URL".into()
    }
}

/// A comma list, each item trimmed, empty items dropped.
#[derive(Debug)]
pub struct List;

impl Kind for List {
    type Value = Vec<String>;
    fn parse(&self, raw: &str) -> Result<Vec<String>, String> {
        Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
    fn describe(&self) -> String {
        "a comma list".into()
    }
}

/// OAuth scopes, separated by spaces or commas (as Google writes them, or as a comma
/// list), each without control characters.
#[derive(Debug)]
pub struct ScopeList;

impl Kind for ScopeList {
    type Value = Vec<String>;
    fn parse(&self, raw: &str) -> Result<Vec<String>, String> {
        let scopes: Vec<String> = raw
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if scopes.iter().any(|s| !s.bytes().all(|b| b.is_ascii_graphic())) {
            return Err("a scope holds a character that is not printable ASCII".into());
        }
        Ok(scopes)
    }
    fn describe(&self) -> String {
        "scopes, separated by spaces or commas".into()
    }
}

/// A whole number in `min..=max`, read as `T`.
#[derive(Debug)]
pub struct Whole<T> {
    min: u64,
    max: u64,
    into: PhantomData<fn() -> T>,
}

impl<T> Whole<T> {
    /// At least `min`, at most `max`.
    pub const fn within(min: u64, max: u64) -> Self {
        Self {
            min,
            max,
            into: PhantomData,
        }
    }
}

fn whole(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    let value: u64 = raw.parse().map_err(|_| "not a whole number".to_owned())?;
    match (value < min, value > max) {
        (false, false) => Ok(value),
        _ => Err(range(min, max)),
    }
}

fn range(min: u64, max: u64) -> String {
    match max {
        u64::MAX => format!("must be a whole number from {min}"),
        _ => format!("must be a whole number from {min} to {max}"),
    }
}

impl<T: TryFrom<u64>> Kind for Whole<T> {
    type Value = T;
    fn parse(&self, raw: &str) -> Result<T, String> {
        T::try_from(whole(raw, self.min, self.max)?).map_err(|_| "too large".to_owned())
    }
    fn describe(&self) -> String {
        range(self.min, self.max).trim_start_matches("must be ").to_owned()
    }
}

/// The unit a [`Span`] is written in.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Millis,
    Secs,
    Minutes,
    Days,
}

/// A length of time: a whole number of `unit`s in `min..=max`.
#[derive(Debug)]
pub struct Span {
    pub unit: Unit,
    pub min: u64,
    pub max: u64,
}

impl Kind for Span {
    type Value = Duration;
    fn parse(&self, raw: &str) -> Result<Duration, String> {
        let n = whole(raw, self.min, self.max)?;
        Ok(match self.unit {
            Unit::Millis => Duration::from_millis(n),
            Unit::Secs => Duration::from_secs(n),
            Unit::Minutes => Duration::from_secs(n.saturating_mul(60)),
            Unit::Days => Duration::from_secs(n.saturating_mul(86_400)),
        })
    }
    fn describe(&self) -> String {
        let unit = match self.unit {
            Unit::Millis => "milliseconds",
            Unit::Secs => "seconds",
            Unit::Minutes => "minutes",
            Unit::Days => "days",
        };
        match self.max {
            u64::MAX => format!("{unit}, from {}", self.min),
            max => format!("{unit}, {} to {max}", self.min),
        }
    }
}

/// One of a few words, read by `T`'s `FromStr`.
#[derive(Debug)]
pub struct OneOf<T> {
    words: &'static str,
    into: PhantomData<fn() -> T>,
}

impl<T> OneOf<T> {
    /// `words` lists what `T::from_str` accepts, for the error and the docs.
    pub const fn words(words: &'static str) -> Self {
        Self {
            words,
            into: PhantomData,
        }
    }
}

impl<T: FromStr> Kind for OneOf<T> {
    type Value = T;
    fn parse(&self, raw: &str) -> Result<T, String> {
        raw.parse().map_err(|_| format!("must be {}", self.words))
    }
    fn describe(&self) -> String {
        self.words.to_owned()
    }
}

/// A POSIX time zone (`PST8PDT,M3.2.0,M11.1.0`, `UTC0`).
#[derive(Debug)]
pub struct PosixZone;

impl Kind for PosixZone {
    type Value = jiff::tz::TimeZone;
    fn parse(&self, raw: &str) -> Result<jiff::tz::TimeZone, String> {
        jiff::tz::TimeZone::posix(raw)
            .map_err(|_| "not a POSIX time zone such as PST8PDT,M3.2.0,M11.1.0 or UTC0".to_owned())
    }
    fn describe(&self) -> String {
        "a POSIX time zone".into()
    }
}

/// A variable no config accepts any more: setting it fails init, saying what replaced it.
#[derive(Debug)]
pub struct Retired(pub &'static str);

impl Kind for Retired {
    type Value = ();
    fn parse(&self, _: &str) -> Result<(), String> {
        Err(self.0.to_owned())
    }
    fn describe(&self) -> String {
        "nothing (refused at start-up)".into()
    }
}
