//! The plug-in point for sink kinds: the [`Kind`] trait that one folder under
//! `sink/` implements, and the [`Registry`] that the one list of kinds
//! ([`sink_kinds!`](crate::sink_kinds)) generates from it.
//!
//! A kind owns everything about itself: its raw table and the validation of it
//! (through [`SinkCheck`], which puts key paths on every problem and reads
//! secrets the way §3.2 says), which of its keys a reload applies live
//! ([`Reload`]), its set-up (`build`, `ready`), the proof of that set-up that
//! `zcc-relay check` prints (`check`, as [`Finding`]s) and its delivery. The keys every
//! sink has (`name`, `type`, `events`, `timeout`, `max_in_flight`, `retry_*`)
//! are not a kind's business: `config/` validates them once.
//!
//! Every method a kind must decide on has no default, and the generated
//! dispatch matches every kind without a wildcard, so a kind added to the list
//! but not thought through does not compile.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::config::SinkCheck;
use crate::deliver::Envelope;
use crate::failure::Failure;
use crate::service::Health;

/// One sink kind, implemented by its runtime type (`HttpSink`).
pub trait Kind: Sized + Send + Sync + 'static {
    /// The `type` value that selects this kind in a `[[sinks]]` table.
    const TYPE: &'static str;
    /// What `events` is when the key is absent; empty means every event.
    const DEFAULT_EVENTS: &'static [&'static str];

    /// The kind's own keys as written: serde with `deny_unknown_fields` and
    /// `default`, every value optional (and a string where it needs
    /// interpreting), so that [`Kind::validate`] reports each problem with its key.
    type Config: DeserializeOwned;
    /// The validated settings: no `Option` left where a default exists;
    /// secrets are [`Secret`](crate::config::Secret)s, so `Debug` never shows one.
    type Settings: Clone + Debug + PartialEq + Eq + Send + Sync + 'static;

    /// Checks every key, reporting each problem through `check` and carrying
    /// on; `None` when something was reported.
    fn validate(config: Self::Config, check: &mut SinkCheck<'_, '_>) -> Option<Self::Settings>;

    /// Sorts what changed between the running settings and a re-read file into
    /// keys a reload applies live and keys that need a restart. Destructure
    /// `loaded` without `..`, so that a new key does not compile until sorted.
    fn reload(running: &Self::Settings, loaded: &Self::Settings) -> Reload<Self::Settings>;

    /// Builds the running sink. Fails only on what makes the daemon unable to
    /// start (a file that cannot be opened); a remote that is down is
    /// `ready`'s business.
    fn build(
        settings: &Self::Settings,
        context: &BuildContext<'_>,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Proves the set-up without writing anything: a broker connection, an
    /// OAuth pre-flight. Called once as the sink's worker starts (a failure is
    /// logged, the sink runs and its records wait).
    fn ready(&self) -> impl Future<Output = Result<(), Failure>> + Send;

    /// What `zcc-relay check` proves about a sink with `settings`, without
    /// building it and without writing anything anywhere (no file created or
    /// appended to, no request with an effect): reachability, credentials,
    /// required fields, permissions. Says what it proved and each problem with
    /// its fix ([`Finding`]); the sink is ready when there is no
    /// [`Finding::Problem`]. Runs beside a running daemon, never with the
    /// journal; `context.health` watches nothing here. No finding may carry a
    /// secret (nor a URL's password).
    fn check(
        settings: &Self::Settings,
        context: &BuildContext<'_>,
    ) -> impl Future<Output = Vec<Finding>> + Send;

    /// Takes the live keys of `settings` (what [`Kind::reload`] put into
    /// [`Reload::applied`]) from the next delivery on. An error keeps the values
    /// in use.
    fn apply(&self, settings: &Self::Settings) -> anyhow::Result<()>;

    /// Delivers one record: `envelope.bytes` is the forwarded record of
    /// docs/contract.md §3.3.
    fn deliver(&self, envelope: &Envelope) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Delivers several records (of one engagement, in journal order, when
    /// [`Kind::coalesce`] is above 1; of several, each one's in journal
    /// order, when [`Kind::spread`] is) and says how each one went, in the same
    /// order. By default one after another; a kind that can write them in one
    /// request (a CRM upsert) overrides it.
    fn deliver_batch(
        &self,
        envelopes: &[Envelope],
    ) -> impl Future<Output = Vec<Result<(), Failure>>> + Send {
        one_at_a_time(envelopes, |envelope| self.deliver(envelope))
    }

    /// At most this many due records of one engagement per
    /// [`Kind::deliver_batch`] call; 1: no coalescing.
    fn coalesce(&self) -> usize {
        1
    }

    /// At most this many engagements per [`Kind::deliver_batch`] call (a
    /// backlog written with a CRM's batch API); 1: one engagement per call.
    fn spread(&self) -> usize {
        1
    }
}

/// The default batch delivery: each record on its own, in order.
async fn one_at_a_time<'a, F, Fut>(
    envelopes: &'a [Envelope],
    mut deliver: F,
) -> Vec<Result<(), Failure>>
where
    F: FnMut(&'a Envelope) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut outcomes = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        outcomes.push(deliver(envelope).await);
    }
    outcomes
}

/// What a kind's `build` may use besides its own settings.
pub struct BuildContext<'a> {
    /// The sink's `name`, for heartbeats and log lines.
    pub name: &'a str,
    /// The sink's `timeout` (per request).
    pub timeout: Duration,
    /// The daemon's one TLS configuration, for every outbound connection.
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// Where a kind's own long-lived task registers its heartbeat.
    pub health: &'a Health,
    /// The journal, for kinds that read more than the record (a CRM sink
    /// renders the engagement's interaction aggregate, and keeps the CRM ids
    /// it created through `crm::ids::CreatedIds`); `None` where there is
    /// none (a set-up check).
    pub journal: Option<&'a crate::journal::Journal>,
}

/// One line of `zcc-relay check`'s report on a sink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Finding {
    /// Something proved ("connected to crm.example.com:443").
    Proved { what: String },
    /// Something that keeps the sink from delivering, and what the operator
    /// does about it (a config key to change, a permission to grant).
    Problem { problem: String, fix: String },
}

impl Finding {
    pub fn proved(what: impl Into<String>) -> Finding {
        Finding::Proved { what: what.into() }
    }

    pub fn problem(problem: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::Problem {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn is_problem(&self) -> bool {
        matches!(self, Finding::Problem { .. })
    }
}

/// A reload's verdict on one sink's kind keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload<S> {
    /// The running settings with the live changes taken over; what
    /// [`Kind::apply`] receives and the daemon keeps as running.
    pub applied: S,
    /// Changed keys applied live (key names within the sink, e.g. `secret`).
    pub live: Vec<&'static str>,
    /// Changed keys that take effect only after a restart.
    pub restart: Vec<&'static str>,
}

impl<S: Clone> Reload<S> {
    /// Nothing changed yet: `applied` is the running settings.
    pub fn new(running: &S) -> Reload<S> {
        Reload {
            applied: running.clone(),
            live: Vec::new(),
            restart: Vec::new(),
        }
    }

    /// `key` needs a restart when its value changed.
    pub fn restart<T: PartialEq>(&mut self, key: &'static str, running: &T, loaded: &T) {
        if running != loaded {
            self.restart.push(key);
        }
    }

    /// `key` applies live: when it changed, `field` of `applied` takes the
    /// loaded value.
    pub fn live<T: PartialEq + Clone>(
        &mut self,
        key: &'static str,
        loaded: &T,
        field: impl FnOnce(&mut S) -> &mut T,
    ) {
        let slot = field(&mut self.applied);
        if slot != loaded {
            *slot = loaded.clone();
            self.live.push(key);
        }
    }

    /// The same verdict over other settings (a kind's inside the registry's enum).
    pub fn map<T>(self, wrap: impl FnOnce(S) -> T) -> Reload<T> {
        Reload {
            applied: wrap(self.applied),
            live: self.live,
            restart: self.restart,
        }
    }
}

/// The closed set of sink kinds, implemented by the settings enum that
/// [`sink_kinds!`](crate::sink_kinds) generates (`SinkKind`). Config
/// validation, reloads and `app` reach the kinds only through it.
pub trait Registry: Clone + Debug + PartialEq + Eq + Send + Sync + Sized + 'static {
    /// The running sinks: one variant per kind.
    type Sink: Running<Self>;
    /// Every kind's `type`, in list order.
    const TYPES: &'static [&'static str];

    /// Every key some kind takes, in list order without repeats: the keys a
    /// `[[sinks]]` table may hold besides the common ones.
    fn keys() -> Vec<&'static str>;
    /// This kind's `type`.
    fn type_name(&self) -> &'static str;
    /// This kind's default `events`.
    fn default_events(&self) -> &'static [&'static str];
    /// Validates the kind keys `check` holds as kind `type_name`; the outer
    /// `None` says no kind has that `type`.
    fn validate(type_name: &str, check: &mut SinkCheck<'_, '_>) -> Option<Option<Self>>;
    /// [`Kind::reload`] of the kind both are; `None` when the kind changed.
    fn reload(running: &Self, loaded: &Self) -> Option<Reload<Self>>;
    /// [`Kind::build`] of this kind.
    fn build(
        &self,
        context: &BuildContext<'_>,
    ) -> impl Future<Output = anyhow::Result<Self::Sink>> + Send;
    /// [`Kind::check`] of this kind.
    fn check(&self, context: &BuildContext<'_>) -> impl Future<Output = Vec<Finding>> + Send;
}

/// A running sink of registry `R`, whatever its kind: what `deliver/` and
/// `app` hold.
pub trait Running<R>: Send + Sync + 'static {
    /// [`Kind::ready`].
    fn ready(&self) -> impl Future<Output = Result<(), Failure>> + Send;
    /// [`Kind::apply`]; an error when `settings` are of another kind.
    fn apply(&self, settings: &R) -> anyhow::Result<()>;
    /// [`Kind::deliver`].
    fn deliver(&self, envelope: &Envelope) -> impl Future<Output = Result<(), Failure>> + Send;
    /// [`Kind::deliver_batch`]; by default one after another.
    fn deliver_batch(
        &self,
        envelopes: &[Envelope],
    ) -> impl Future<Output = Vec<Result<(), Failure>>> + Send {
        one_at_a_time(envelopes, |envelope| self.deliver(envelope))
    }
    /// [`Kind::coalesce`]; by default 1 (no coalescing).
    fn coalesce(&self) -> usize {
        1
    }
    /// [`Kind::spread`]; by default 1 (one engagement per call).
    fn spread(&self) -> usize {
        1
    }
}

/// The one list of sink kinds: generates the settings enum (one variant per
/// kind, holding its validated settings), the running enum (holding its
/// runtime type), [`Registry`] for the first and [`Running`] for the second,
/// every dispatch an exhaustive `match`.
///
/// ```text
/// sink_kinds! {
///     /// The validated settings of a sink's kind.
///     pub enum SinkKind;
///     /// A running sink.
///     pub enum Sink;
///     Http => http::HttpSink,
///     File => file::FileSink,
/// }
/// ```
#[macro_export]
macro_rules! sink_kinds {
    (
        $(#[$kind_meta:meta])*
        $kind_vis:vis enum $kind:ident;
        $(#[$sink_meta:meta])*
        $sink_vis:vis enum $sink:ident;
        $($variant:ident => $runtime:ty),+ $(,)?
    ) => {
        $(#[$kind_meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        $kind_vis enum $kind {
            $($variant(<$runtime as $crate::sink::Kind>::Settings),)+
        }

        $(#[$sink_meta])*
        $sink_vis enum $sink {
            $($variant($runtime),)+
        }

        impl $crate::sink::Registry for $kind {
            type Sink = $sink;
            const TYPES: &'static [&'static str] =
                &[$(<$runtime as $crate::sink::Kind>::TYPE),+];

            fn keys() -> ::std::vec::Vec<&'static str> {
                let mut keys = ::std::vec::Vec::new();
                $(
                    for key in $crate::sink::kind::fields_of::<
                        <$runtime as $crate::sink::Kind>::Config,
                    >() {
                        if !keys.contains(key) {
                            keys.push(*key);
                        }
                    }
                )+
                keys
            }

            fn type_name(&self) -> &'static str {
                match self {
                    $($kind::$variant(_) => <$runtime as $crate::sink::Kind>::TYPE,)+
                }
            }

            fn default_events(&self) -> &'static [&'static str] {
                match self {
                    $($kind::$variant(_) => <$runtime as $crate::sink::Kind>::DEFAULT_EVENTS,)+
                }
            }

            fn validate(
                type_name: &str,
                check: &mut $crate::config::SinkCheck<'_, '_>,
            ) -> ::std::option::Option<::std::option::Option<Self>> {
                $(
                    if type_name == <$runtime as $crate::sink::Kind>::TYPE {
                        return ::std::option::Option::Some(
                            check.kind::<$runtime>().map($kind::$variant),
                        );
                    }
                )+
                ::std::option::Option::None
            }

            fn reload(
                running: &Self,
                loaded: &Self,
            ) -> ::std::option::Option<$crate::sink::Reload<Self>> {
                #[allow(unreachable_patterns)]
                match (running, loaded) {
                    $(
                        ($kind::$variant(running), $kind::$variant(loaded)) => {
                            ::std::option::Option::Some(
                                <$runtime as $crate::sink::Kind>::reload(running, loaded)
                                    .map($kind::$variant),
                            )
                        }
                    )+
                    // Only pairs of two different kinds are left.
                    _ => ::std::option::Option::None,
                }
            }

            async fn build(
                &self,
                context: &$crate::sink::BuildContext<'_>,
            ) -> $crate::sink::kind::__anyhow::Result<$sink> {
                ::std::result::Result::Ok(match self {
                    $(
                        $kind::$variant(settings) => $sink::$variant(
                            <$runtime as $crate::sink::Kind>::build(settings, context).await?,
                        ),
                    )+
                })
            }

            async fn check(
                &self,
                context: &$crate::sink::BuildContext<'_>,
            ) -> ::std::vec::Vec<$crate::sink::Finding> {
                match self {
                    $(
                        $kind::$variant(settings) => {
                            <$runtime as $crate::sink::Kind>::check(settings, context).await
                        }
                    )+
                }
            }
        }

        impl $crate::sink::Running<$kind> for $sink {
            async fn ready(&self) -> ::std::result::Result<(), $crate::failure::Failure> {
                match self {
                    $($sink::$variant(sink) => <$runtime as $crate::sink::Kind>::ready(sink).await,)+
                }
            }

            fn apply(&self, settings: &$kind) -> $crate::sink::kind::__anyhow::Result<()> {
                #[allow(unreachable_patterns)]
                match (self, settings) {
                    $(
                        ($sink::$variant(sink), $kind::$variant(settings)) => {
                            <$runtime as $crate::sink::Kind>::apply(sink, settings)
                        }
                    )+
                    // Only pairs of two different kinds are left.
                    (_, settings) => ::std::result::Result::Err($crate::sink::kind::__anyhow::anyhow!(
                        "the running sink is not of type {:?}",
                        $crate::sink::Registry::type_name(settings)
                    )),
                }
            }

            async fn deliver(
                &self,
                envelope: &$crate::deliver::Envelope,
            ) -> ::std::result::Result<(), $crate::failure::Failure> {
                match self {
                    $(
                        $sink::$variant(sink) => {
                            <$runtime as $crate::sink::Kind>::deliver(sink, envelope).await
                        }
                    )+
                }
            }

            async fn deliver_batch(
                &self,
                envelopes: &[$crate::deliver::Envelope],
            ) -> ::std::vec::Vec<::std::result::Result<(), $crate::failure::Failure>> {
                match self {
                    $(
                        $sink::$variant(sink) => {
                            <$runtime as $crate::sink::Kind>::deliver_batch(sink, envelopes).await
                        }
                    )+
                }
            }

            fn coalesce(&self) -> usize {
                match self {
                    $($sink::$variant(sink) => <$runtime as $crate::sink::Kind>::coalesce(sink),)+
                }
            }

            fn spread(&self) -> usize {
                match self {
                    $($sink::$variant(sink) => <$runtime as $crate::sink::Kind>::spread(sink),)+
                }
            }
        }
    };
}

/// For [`sink_kinds!`](crate::sink_kinds) invoked in a crate without `anyhow`.
#[doc(hidden)]
pub use anyhow as __anyhow;

/// The field names of a `#[derive(Deserialize)]` struct, as serde lists them
/// (what `deny_unknown_fields` accepts). The registry's key list and the
/// "not used by type" check read a kind's keys from its config struct itself,
/// so they cannot drift from it.
#[doc(hidden)]
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(FieldList(fields)) => fields,
        Ok(_) => &[],
    }
}

/// A deserializer that answers nothing and reports the fields it was asked for.
struct FieldProbe;

#[derive(Debug)]
struct FieldList(&'static [&'static str]);

impl std::fmt::Display for FieldList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for FieldList {}

impl serde::de::Error for FieldList {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        FieldList(&[])
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe {
    type Error = FieldList;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, FieldList> {
        Err(FieldList(&[]))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, FieldList> {
        Err(FieldList(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[allow(dead_code)]
    #[derive(Default)]
    struct Probed {
        url: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
    }

    #[test]
    fn fields_are_read_from_the_struct() {
        assert_eq!(fields_of::<Probed>(), ["url", "type"]);
    }

    #[derive(Clone, Debug, PartialEq)]
    struct Two {
        url: &'static str,
        secret: &'static str,
    }

    #[test]
    fn reload_sorts_changed_keys_and_takes_live_ones_over() {
        let running = Two {
            url: "a",
            secret: "s1",
        };
        let loaded = Two {
            url: "b",
            secret: "s2",
        };
        let mut reload = Reload::new(&running);
        reload.restart("url", &running.url, &loaded.url);
        reload.live("secret", &loaded.secret, |s| &mut s.secret);
        assert_eq!(reload.restart, ["url"]);
        assert_eq!(reload.live, ["secret"]);
        assert_eq!(
            reload.applied,
            Two {
                url: "a",
                secret: "s2"
            }
        );
        let unchanged = {
            let mut reload = Reload::new(&running);
            reload.restart("url", &running.url, &running.url);
            reload.live("secret", &running.secret, |s| &mut s.secret);
            reload
        };
        assert!(unchanged.live.is_empty() && unchanged.restart.is_empty());
    }
}
