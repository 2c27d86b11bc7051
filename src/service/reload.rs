//! SIGHUP: what a re-read configuration may change in a running daemon.
//!
//! Safe to change live: `daemon.log_level`, the Zoom client secret (used from
//! the next token request on) and the keys each sink kind says it applies live
//! (`Kind::reload`; today the http sink's signing secret, from the next request
//! on). Everything else — endpoints, timings, sinks added, removed or changed,
//! the journal — needs a restart; [`plan`] lists those keys so the log can say
//! which changes were not applied. The journal is never touched.
//!
//! Owns the comparison (pure); `app` applies the plan and `main` listens for
//! the signal.

use crate::config::{
    DaemonSettings, JournalSettings, MediaSettings, MetricsSettings, ReconcileSettings, Secret,
    Settings, SinkKind, SinkSettings, WebsocketSettings, ZoomSettings,
};
use crate::sink::Registry;

/// What a reload changes, and what it cannot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The new `daemon.log_level`, if it changed.
    pub log_level: Option<String>,
    /// The new Zoom client secret, if it changed.
    pub zoom_client_secret: Option<Secret>,
    /// Sinks (present before and after, same type) with kind keys that apply
    /// live and changed.
    pub sinks: Vec<SinkReload>,
    /// Keys whose new values take effect only after a restart.
    pub needs_restart: Vec<String>,
}

/// The keys a reload applies live, as the log names them.
pub const LOG_LEVEL_KEY: &str = "daemon.log_level";
pub const ZOOM_CLIENT_SECRET_KEY: &str = "zoom.client_secret";

/// A sink's key as the log names it: `sinks[crm].secret`.
pub fn sink_key(sink: &str, key: &str) -> String {
    format!("sinks[{sink}].{key}")
}

/// One running sink's live changes.
#[derive(Debug, PartialEq, Eq)]
pub struct SinkReload {
    pub name: String,
    /// The changed keys applied live (`secret`).
    pub keys: Vec<&'static str>,
    /// The running kind settings with those changes taken over: what the
    /// running sink applies and the daemon then keeps as running.
    pub kind: SinkKind,
}

impl SinkReload {
    /// The keys as the log names them.
    pub fn key_paths(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| sink_key(&self.name, key))
            .collect()
    }
}

impl Plan {
    /// The keys this plan changes live, for the log line.
    pub fn reloaded_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if self.log_level.is_some() {
            keys.push(LOG_LEVEL_KEY.to_owned());
        }
        if self.zoom_client_secret.is_some() {
            keys.push(ZOOM_CLIENT_SECRET_KEY.to_owned());
        }
        for sink in &self.sinks {
            keys.extend(sink.key_paths());
        }
        keys
    }
}

/// Compares the running settings with a freshly loaded file.
pub fn plan(running: &Settings, loaded: &Settings) -> Plan {
    let mut plan = Plan::default();
    let restart = &mut plan.needs_restart;

    // Each section's fields are destructured without `..`: a field added to
    // the settings does not compile until it is sorted here, into a restart
    // key or into what a reload applies live (`live`).
    macro_rules! compare {
        ($old:expr, $new:expr, $section:literal, $type:ident { $($field:ident),* $(,)? }
         $(, live: [$($live:ident),*])?) => {{
            let $type { $($field: _,)* $($($live: _,)*)? } = $old;
            $(if $old.$field != $new.$field {
                restart.push(concat!($section, ".", stringify!($field)).to_owned());
            })*
        }};
    }
    let Settings {
        zoom: _,
        websocket: _,
        daemon: _,
        journal: _,
        reconcile: _,
        media: _,
        metrics: _,
        standby: _,
        sinks: _,
    } = running;
    compare!(
        &running.zoom,
        &loaded.zoom,
        "zoom",
        ZoomSettings {
            account_id,
            client_id,
            subscription_id,
            oauth_url,
            api_base_url,
            websocket_url,
        },
        live: [client_secret]
    );
    compare!(
        &running.websocket,
        &loaded.websocket,
        "websocket",
        WebsocketSettings {
            heartbeat_interval,
            idle_timeout,
            connect_timeout,
            reconnect_min,
            reconnect_max,
            max_frame_bytes,
        }
    );
    compare!(
        &running.daemon,
        &loaded.daemon,
        "daemon",
        DaemonSettings { drain_timeout },
        live: [log_level]
    );
    compare!(
        &running.journal,
        &loaded.journal,
        "journal",
        JournalSettings { dir }
    );
    compare!(
        &running.reconcile,
        &loaded.reconcile,
        "reconcile",
        ReconcileSettings {
            enabled,
            on_reconnect,
            interval,
            lookback,
            gap_margin,
            engagement_lookback,
            max_requests_per_second,
        }
    );
    compare!(
        &running.media,
        &loaded.media,
        "media",
        MediaSettings {
            enabled,
            store,
            link_ttl,
            allow_http,
            options,
        }
    );
    compare!(
        &running.metrics,
        &loaded.metrics,
        "metrics",
        MetricsSettings { listen }
    );
    // The lease's connection, bucket and ttl are fixed when it is taken.
    match (&running.standby, &loaded.standby) {
        (None, None) => {}
        (Some(old), Some(new)) => {
            if old.connection != new.connection {
                restart.push("standby (connection)".to_owned());
            }
            if old.bucket != new.bucket {
                restart.push("standby.bucket".to_owned());
            }
            if old.ttl != new.ttl {
                restart.push("standby.ttl".to_owned());
            }
        }
        (None, Some(_)) => restart.push("standby (added)".to_owned()),
        (Some(_), None) => restart.push("standby (removed)".to_owned()),
    }

    if running.daemon.log_level != loaded.daemon.log_level {
        plan.log_level = Some(loaded.daemon.log_level.clone());
    }
    if running.zoom.client_secret != loaded.zoom.client_secret {
        plan.zoom_client_secret = Some(loaded.zoom.client_secret.clone());
    }

    for old in &running.sinks {
        match loaded.sink(&old.name) {
            None => restart.push(format!("sinks[{}] (removed)", old.name)),
            Some(new) => {
                if let Some(live) = sink_changes(old, new, restart) {
                    plan.sinks.push(live);
                }
            }
        }
    }
    for new in &loaded.sinks {
        if running.sink(&new.name).is_none() {
            restart.push(format!("sinks[{}] (added)", new.name));
        }
    }
    plan
}

/// Sorts one sink's changes: restart keys into `restart`, live ones returned.
fn sink_changes(
    old: &SinkSettings,
    new: &SinkSettings,
    restart: &mut Vec<String>,
) -> Option<SinkReload> {
    let name = &old.name;
    // Exhaustive like `plan`'s: `name` is the key, `kind` is its kind's to sort.
    macro_rules! compare {
        ($($field:ident),*) => {
            let SinkSettings { name: _, kind: _, $($field: _),* } = old;
            $(if old.$field != new.$field {
                restart.push(format!(concat!("sinks[{}].", stringify!($field)), name));
            })*
        };
    }
    compare!(
        events,
        timeout,
        max_in_flight,
        retry_fast_window,
        retry_schedule,
        retry_forever
    );
    let Some(reload) = SinkKind::reload(&old.kind, &new.kind) else {
        restart.push(sink_key(name, "type"));
        return None;
    };
    restart.extend(reload.restart.iter().map(|key| sink_key(name, key)));
    (!reload.live.is_empty()).then(|| SinkReload {
        name: name.clone(),
        keys: reload.live,
        kind: reload.applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FakeEnvironment, parse};

    const BASE: &str = r#"
        [zoom]
        account_id = "acct"
        client_id = "client"
        client_secret_file = "/s/zoom"
        subscription_id = "sub"
        [daemon]
        log_level = "info"
        [journal]
        dir = "/data"
        [[sinks]]
        name = "crm"
        type = "http"
        url = "https://crm.example.com/zoom"
        secret_file = "/s/crm"
        [[sinks]]
        name = "archive"
        type = "file"
        path = "/data/events.jsonl"
    "#;

    fn settings(text: &str, zoom_secret: &str, crm_secret: &str) -> Settings {
        let env = FakeEnvironment::new()
            .with_file("/s/zoom", zoom_secret)
            .with_file("/s/crm", crm_secret);
        match parse(text, &env) {
            Ok(loaded) => loaded.settings,
            Err(e) => panic!("{e}"),
        }
    }

    fn check(text: &str, zoom: &str, crm: &str, reloaded: &[&str], restart: &[&str]) {
        let running = settings(BASE, "zoom-1", "crm-1");
        let plan = plan(&running, &settings(text, zoom, crm));
        assert_eq!(plan.reloaded_keys(), reloaded, "reloaded");
        assert_eq!(plan.needs_restart, restart, "needs restart");
    }

    #[test]
    fn sorts_changes_into_live_and_restart() {
        check(BASE, "zoom-1", "crm-1\n", &[], &[]);
        check(
            BASE,
            "zoom-2",
            "crm-2",
            &["zoom.client_secret", "sinks[crm].secret"],
            &[],
        );
        check(
            &BASE.replace(r#"log_level = "info""#, r#"log_level = "debug""#),
            "zoom-1",
            "crm-1",
            &["daemon.log_level"],
            &[],
        );
        check(
            &BASE
                .replace(r#"client_id = "client""#, r#"client_id = "other""#)
                .replace("crm.example.com", "crm2.example.com")
                .replace(
                    "[journal]",
                    "[websocket]\nheartbeat_interval = \"20s\"\n[journal]",
                ),
            "zoom-1",
            "crm-2",
            &["sinks[crm].secret"],
            &[
                "zoom.client_id",
                "websocket.heartbeat_interval",
                "sinks[crm].url",
            ],
        );
        check(
            &BASE.replace(r#"name = "archive""#, r#"name = "archive2""#),
            "zoom-1",
            "crm-1",
            &[],
            &["sinks[archive] (removed)", "sinks[archive2] (added)"],
        );
        check(
            &BASE.replace("dir = \"/data\"", "dir = \"/other\""),
            "zoom-1",
            "crm-1",
            &[],
            &["journal.dir", "media.store"],
        );
    }

    #[test]
    fn new_secrets_are_carried_not_printed() {
        let running = settings(BASE, "zoom-1", "crm-1");
        let plan = plan(&running, &settings(BASE, "zoom-2", "crm-2"));
        assert_eq!(
            plan.zoom_client_secret.as_ref().map(Secret::expose),
            Some("zoom-2")
        );
        let [update] = plan.sinks.as_slice() else {
            panic!("one sink update expected: {:?}", plan.sinks);
        };
        assert_eq!(update.key_paths(), ["sinks[crm].secret"]);
        let SinkKind::Http(http) = &update.kind else {
            panic!("not the http sink: {update:?}");
        };
        assert_eq!(http.secret.as_ref().map(Secret::expose), Some("crm-2"));
        let rendered = format!("{plan:?}");
        assert!(
            !rendered.contains("zoom-2") && !rendered.contains("crm-2"),
            "{rendered}"
        );
    }
}
