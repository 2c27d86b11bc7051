//! Integration tests: the daemon against the built-in Zoom simulator and fake
//! sinks, all on 127.0.0.1, in one test binary.

mod check;
mod cli;
mod crash;
mod delivery;
mod disk_full;
mod durability;
mod dynamics;
mod footprint;
mod harness;
mod hostile;
mod hubspot;
mod media;
mod metrics;
mod nats;
mod operator_kit;
mod pipeline;
mod plugin;
mod queue;
mod reconcile;
mod salesforce;
mod service;
mod servicenow;
mod source;
mod space;
mod standby;
mod status;
mod support;
mod upgrade;
mod zendesk;
