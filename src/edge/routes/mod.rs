//! The Worker's routes, one file per resource family; `edge::route` maps paths and methods to them.

pub mod audiences;
pub mod collect;
pub mod config;
pub mod console;
pub mod decide;
pub mod demo;
pub mod destinations;
pub mod docs;
pub mod experiments;
pub mod export;
pub mod imports;
pub mod journeys;
pub mod predictions;
pub mod profiles;
