//! The `[[sinks]]` tables: the keys every sink has, validated once here, and
//! [`SinkCheck`], through which a sink kind validates its own keys.
//!
//! Owns the common keys' rules and defaults, the sink name's alphabet and
//! uniqueness, the dispatch on `type` (through the [`Registry`]), keys of
//! another kind (`path` on an http sink), and the naming of a kind's secrets
//! (`sinks[i].<key>`, `<key>_file`, the credential `sink-<name>-<key>`, the
//! variable `ZCC_RELAY_SINK_<NAME>_<KEY>`). What a kind's keys mean is the
//! kind's business (`sink/<kind>/`).

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use super::raw::SinkConfig;
use super::validate::{Checker, HTTP_SCHEMES, SecretLookup, SecretPlaces};
use super::{
    ConfigError, DEFAULT_MAX_IN_FLIGHT, DEFAULT_RETRY_FAST_WINDOW, DEFAULT_RETRY_SCHEDULE,
    DEFAULT_SINK_TIMEOUT, Environment, Problem, Secret, Secrets, SinkSettings,
};
use crate::sink::Registry;
use crate::sink::kind::{Kind, fields_of};

/// Validates one sink table written as TOML text (its keys, without the
/// `[[sinks]]` header) against registry `R`: what `parse` does for each
/// `[[sinks]]` entry, for a registry other than the daemon's (a test's).
/// `Ok` carries the warnings.
pub fn parse_sink<R: Registry>(
    text: &str,
    env: &dyn Environment,
    secrets: Secrets,
) -> Result<(SinkSettings<R>, Vec<Problem>), ConfigError> {
    let raw: SinkConfig<R> = toml::from_str(text)
        .map_err(|error| ConfigError::from(super::FileError::toml(text, &error)))?;
    let mut check = Checker {
        env,
        secrets,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let sink = check.sink(0, raw, &mut HashSet::new());
    let Checker {
        errors, warnings, ..
    } = check;
    match sink {
        Some(sink) if errors.is_empty() => Ok((sink, warnings)),
        _ => Err(ConfigError {
            problems: errors,
            warnings,
            file: None,
        }),
    }
}

impl Checker<'_> {
    pub(super) fn sinks<R: Registry>(
        &mut self,
        raw: Vec<SinkConfig<R>>,
    ) -> Option<Vec<SinkSettings<R>>> {
        if raw.is_empty() {
            self.error("sinks", "at least one [[sinks]] is required");
            return None;
        }
        let mut names = HashSet::new();
        let mut sinks = Vec::with_capacity(raw.len());
        let mut complete = true;
        for (index, sink) in raw.into_iter().enumerate() {
            match self.sink(index, sink, &mut names) {
                Some(sink) => sinks.push(sink),
                None => complete = false,
            }
        }
        complete.then_some(sinks)
    }

    fn sink<R: Registry>(
        &mut self,
        index: usize,
        raw: SinkConfig<R>,
        names: &mut HashSet<String>,
    ) -> Option<SinkSettings<R>> {
        let at = |field: &str| format!("sinks[{index}].{field}");
        let name = self.sink_name(&at("name"), raw.name, names);
        let kind = match raw.kind.as_deref() {
            Some(type_name) => {
                let mut check = SinkCheck {
                    checker: self,
                    index,
                    name: name.clone(),
                    type_name: type_name.to_owned(),
                    kind_keys: raw.kind_keys,
                    all_keys: R::keys(),
                    section: None,
                };
                match R::validate(type_name, &mut check) {
                    Some(kind) => kind,
                    None => {
                        self.error(
                            at("type"),
                            format!(
                                "unknown sink type {type_name:?}; allowed: {}",
                                quoted(R::TYPES)
                            ),
                        );
                        None
                    }
                }
            }
            None => {
                self.error(at("type"), format!("missing; one of {}", quoted(R::TYPES)));
                None
            }
        };

        let events = match raw.events {
            None => kind.as_ref().map(|kind| {
                let defaults = kind.default_events();
                defaults.iter().map(|event| (*event).to_owned()).collect()
            }),
            Some(events) => {
                if events.is_empty() {
                    self.warn(
                        at("events"),
                        "an empty list forwards every event; remove the key to say so",
                    );
                }
                for (position, pattern) in events.iter().enumerate() {
                    if pattern.is_empty() {
                        self.error(at(&format!("events[{position}]")), "empty pattern");
                    }
                }
                Some(events)
            }
        };
        let timeout = self.duration(&at("timeout"), raw.timeout, DEFAULT_SINK_TIMEOUT);
        let max_in_flight = self.count(
            &at("max_in_flight"),
            raw.max_in_flight,
            DEFAULT_MAX_IN_FLIGHT,
            1,
        );
        let retry_fast_window = self.duration(
            &at("retry_fast_window"),
            raw.retry_fast_window,
            DEFAULT_RETRY_FAST_WINDOW,
        );
        let retry_schedule = match raw.retry_schedule {
            None => Some(DEFAULT_RETRY_SCHEDULE.to_vec()),
            Some(delays) if delays.is_empty() => {
                self.error(at("retry_schedule"), "must list at least one delay");
                None
            }
            Some(delays) => {
                let parsed: Vec<Option<Duration>> = delays
                    .iter()
                    .enumerate()
                    .map(|(position, delay)| {
                        self.parse_duration(&at(&format!("retry_schedule[{position}]")), delay)
                    })
                    .collect();
                parsed.into_iter().collect()
            }
        };
        Some(SinkSettings {
            name: name?,
            events: events?,
            timeout: timeout?,
            max_in_flight: max_in_flight?,
            retry_fast_window: retry_fast_window?,
            retry_schedule: retry_schedule?,
            retry_forever: raw.retry_forever.unwrap_or(false),
            kind: kind?,
        })
    }

    /// The name keys outboxes, metrics and secret lookups, hence the narrow alphabet.
    /// A duplicate is reported but the name returned, so the rest of that sink is
    /// still checked.
    fn sink_name(
        &mut self,
        key: &str,
        name: Option<String>,
        names: &mut HashSet<String>,
    ) -> Option<String> {
        let Some(name) = name else {
            self.error(key, "missing");
            return None;
        };
        if name.is_empty() {
            self.error(key, "must not be empty");
            return None;
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if !name.chars().all(allowed) {
            self.error(
                key,
                format!("{name:?} may contain only letters, digits, '_', '.' and '-'"),
            );
            return None;
        }
        if !names.insert(name.clone()) {
            self.error(key, format!("duplicate sink name {name:?}"));
        }
        Some(name)
    }
}

/// One sink's validation as its kind sees it: every problem is reported with
/// the key path `sinks[<index>].<key>` and validation carries on.
pub struct SinkCheck<'c, 'e> {
    checker: &'c mut Checker<'e>,
    index: usize,
    /// `None` when the name is missing or invalid (already reported).
    name: Option<String>,
    type_name: String,
    /// The table's kind keys, until [`SinkCheck::kind`] takes them.
    kind_keys: Vec<(String, toml::Value)>,
    /// Every kind's keys in the registry's order.
    all_keys: Vec<&'static str>,
    /// A top-level table (`standby`) that shares a kind's keys: keys are
    /// `<section>.<key>`, secrets the credential `<section>-<key>` and the
    /// variable `ZCC_RELAY_<SECTION>_<KEY>`.
    section: Option<&'static str>,
}

impl<'c, 'e> SinkCheck<'c, 'e> {
    /// The check of a top-level table whose keys a sink kind's validation
    /// shares (`[standby]` reuses the nats kind's connection keys).
    pub(super) fn section(checker: &'c mut Checker<'e>, section: &'static str) -> Self {
        SinkCheck {
            checker,
            index: 0,
            name: None,
            type_name: String::new(),
            kind_keys: Vec::new(),
            all_keys: Vec::new(),
            section: Some(section),
        }
    }
}

impl SinkCheck<'_, '_> {
    /// `sinks[<index>].<key>` (or `<section>.<key>`).
    pub fn key(&self, key: &str) -> String {
        match self.section {
            Some(section) => format!("{section}.{key}"),
            None => format!("sinks[{}].{key}", self.index),
        }
    }

    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key(key);
        self.checker.error(key, message);
    }

    pub fn warn(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key(key);
        self.checker.warn(key, message);
    }

    /// Reports `key` as missing for this type; always `None`.
    pub fn missing<T>(&mut self, key: &str) -> Option<T> {
        let message = match self.section {
            Some(section) => format!("missing; required in [{section}]"),
            None => format!("missing; required for type {:?}", self.type_name),
        };
        self.error(key, message);
        None
    }

    /// An absolute `https://` or `http://` URL without a password.
    /// An absolute `http(s)://` URL; plain `http://` to anything but loopback
    /// is a warning (it works, unencrypted).
    pub fn http_url(&mut self, key: &str, text: &str) -> Option<url::Url> {
        let key = self.key(key);
        let url = self.checker.url(&key, text, HTTP_SCHEMES)?;
        self.checker.warn_if_plaintext(&key, &url);
        Some(url)
    }

    /// A duration with units ("10s"), above zero; `default` when absent.
    pub fn duration(
        &mut self,
        key: &str,
        text: Option<String>,
        default: Duration,
    ) -> Option<Duration> {
        let key = self.key(key);
        self.checker.duration(&key, text, default)
    }

    /// An optional secret written as `<key>` or `<key>_file`, else the systemd
    /// credential `sink-<name>-<key>` (`_` as `-`), else the environment
    /// variable `ZCC_RELAY_SINK_<NAME>_<KEY>`. `Some(None)`: set nowhere;
    /// `None`: set but unusable (reported). Not read at all under
    /// [`Secrets::Skip`].
    pub fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Option<Option<Secret>> {
        let places = SecretPlaces {
            inline_key: self.key(key),
            file_key: self.key(&format!("{key}_file")),
            inline,
            file,
            credential: match self.section {
                Some(section) => Some(format!("{section}-{}", key.replace('_', "-"))),
                None => self
                    .name
                    .as_deref()
                    .map(|name| format!("sink-{name}-{}", key.replace('_', "-"))),
            },
            var: match self.section {
                Some(section) => Some(section_var(section, key)),
                None => self.name.as_deref().map(|name| secret_var(name, key)),
            },
        };
        match self.checker.secret(places) {
            SecretLookup::Found(secret) => Some(Some(secret)),
            SecretLookup::Absent => Some(None),
            SecretLookup::Failed => None,
        }
    }

    /// Validates the table's kind keys as kind `K`: keys of another kind are
    /// reported as not used by this type, the rest deserialized into
    /// `K::Config` (a wrong TOML type is reported with its key) and handed to
    /// [`Kind::validate`].
    pub fn kind<K: Kind>(&mut self) -> Option<K::Settings> {
        let own = fields_of::<K::Config>();
        let entries = std::mem::take(&mut self.kind_keys);
        for key in self.all_keys.clone() {
            if !own.contains(&key) && entries.iter().any(|(present, _)| present == key) {
                let message = format!("not used by type {:?}", self.type_name);
                self.error(key, message);
            }
        }
        let entries: Vec<(String, toml::Value)> = entries
            .into_iter()
            .filter(|(key, _)| own.contains(&key.as_str()))
            .collect();
        let config = match K::Config::deserialize(KindKeys::new(entries)) {
            Ok(config) => config,
            Err(KeyError { key, message }) => {
                match key {
                    Some(key) => self.error(&key, message),
                    None => {
                        let key = format!("sinks[{}]", self.index);
                        self.checker.error(key, message);
                    }
                }
                return None;
            }
        };
        K::validate(config, self)
    }
}

/// `ZCC_RELAY_SINK_<NAME>_<KEY>`, uppercased and everything else made `_`,
/// since environment variable names cannot hold `.` or `-` portably.
fn secret_var(name: &str, key: &str) -> String {
    let upper = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("ZCC_RELAY_SINK_{}_{}", upper(name), upper(key))
}

/// `ZCC_RELAY_<SECTION>_<KEY>` for a top-level table's secret.
fn section_var(section: &str, key: &str) -> String {
    format!(
        "ZCC_RELAY_{}_{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

fn quoted(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    quoted.join(", ")
}

/// A kind's keys as a serde map whose errors name the key they are about.
struct KindKeys {
    entries: std::vec::IntoIter<(String, toml::Value)>,
    key: Option<String>,
    value: Option<toml::Value>,
}

impl KindKeys {
    fn new(entries: Vec<(String, toml::Value)>) -> KindKeys {
        KindKeys {
            entries: entries.into_iter(),
            key: None,
            value: None,
        }
    }
}

#[derive(Debug)]
struct KeyError {
    key: Option<String>,
    message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeyError {}

impl de::Error for KeyError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        KeyError {
            key: None,
            message: message.to_string(),
        }
    }
}

impl<'de> de::Deserializer<'de> for KindKeys {
    type Error = KeyError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, KeyError> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for KindKeys {
    type Error = KeyError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, KeyError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        self.key = Some(key.clone());
        let deserializer: de::value::StringDeserializer<KeyError> = key.into_deserializer();
        seed.deserialize(deserializer)
            .map(Some)
            .map_err(|error| self.keyed(error))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, KeyError> {
        let Some(value) = self.value.take() else {
            return Err(de::Error::custom("value asked for before its key"));
        };
        seed.deserialize(value).map_err(|error| KeyError {
            key: self.key.clone(),
            message: error.message().trim().to_owned(),
        })
    }
}

impl KindKeys {
    fn keyed(&self, mut error: KeyError) -> KeyError {
        if error.key.is_none() {
            error.key = self.key.clone();
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::secret_var;

    #[test]
    fn secret_variables_are_named_after_sink_and_key() {
        for (name, key, expected) in [
            ("crm", "secret", "ZCC_RELAY_SINK_CRM_SECRET"),
            ("crm.eu-1", "secret", "ZCC_RELAY_SINK_CRM_EU_1_SECRET"),
            ("sf", "client_secret", "ZCC_RELAY_SINK_SF_CLIENT_SECRET"),
        ] {
            assert_eq!(secret_var(name, key), expected);
        }
    }
}
