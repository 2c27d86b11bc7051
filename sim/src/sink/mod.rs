//! Fake sinks: the systems the daemon delivers to, run in-process on
//! `127.0.0.1:0`, each with one scripted constructor per behaviour and a log of
//! what it received.
//!
//! One module per sink kind, named after the daemon's kind: [`http`] (a
//! Standard Webhooks receiver), [`salesforce`] (a Salesforce org's REST API),
//! [`dynamics`] (a Dataverse environment's Web API and Entra ID's token
//! endpoint), [`hubspot`] (a portal's CRM, calling and files APIs),
//! [`servicenow`] (an instance's Table and Attachment APIs and its
//! `/oauth_token.do`) and [`zendesk`] (an account's Support API and OAuth
//! token endpoint), one folder each.
//! [`nats`] is the exception that is not a fake: it runs the real
//! `nats-server`. Like the Zoom simulator, nothing here imports
//! the daemon: a fake checks what the daemon sends against its own reading of
//! the vendor's contract.

pub mod dynamics;
pub mod http;
pub mod hubspot;
pub mod nats;
pub mod salesforce;
pub mod servicenow;
pub mod zendesk;
