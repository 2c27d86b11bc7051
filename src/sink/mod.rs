//! Where records go: one folder per sink kind behind a closed registry.
//!
//! A kind (`http/`, `file/`, `salesforce/`, `servicenow/`, `nats/`) implements [`Kind`]: its raw table and validation,
//! which of its keys a reload applies live, its secrets, its set-up, the
//! write-free proof of it that `zcc-relay check` prints, and its delivery. The one list below ([`sink_kinds!`](crate::sink_kinds)) turns the
//! kinds into [`SinkKind`] (a sink's validated kind settings, inside
//! [`SinkSettings`](crate::config::SinkSettings)) and [`Sink`] (a running
//! sink), with every dispatch generated. A sink delivers one record and says
//! how it went (a classified [`Failure`](crate::failure::Failure)); it never
//! retries, never touches the journal and never decides policy (that is
//! `deliver/`).

pub mod dynamics;
pub mod file;
pub mod http;
pub mod hubspot;
pub mod kind;
pub mod nats;
pub mod salesforce;
pub mod servicenow;
pub mod zendesk;

pub use kind::{BuildContext, Finding, Kind, Registry, Reload, Running};

crate::sink_kinds! {
    /// A sink's validated kind settings, one variant per kind.
    pub enum SinkKind;
    /// A running sink, one variant per kind.
    pub enum Sink;
    Http => http::HttpSink,
    File => file::FileSink,
    Salesforce => salesforce::SalesforceSink,
    Dynamics => dynamics::DynamicsSink,
    HubSpot => hubspot::HubSpotSink,
    Nats => nats::NatsSink,
    ServiceNow => servicenow::ServiceNowSink,
    Zendesk => zendesk::ZendeskSink,
}
