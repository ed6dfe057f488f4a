//! Layer 2, the model: events, identities, consent, request context and the profile with what it holds. Reads
//! no configuration: what a rule decides comes in as plain values.

pub mod aggregate;
pub mod attempts;
pub mod audience;
pub mod behaviour;
pub mod consent;
pub mod contact;
pub mod context;
pub mod event;
pub mod history;
pub mod identity;
pub mod journey;
pub mod profile;
pub mod purpose;
pub mod shown;
pub mod tcf;
pub mod trust;
