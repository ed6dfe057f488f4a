//! Layer 5, the engine: what happens to events and profiles under a configuration. Ingest (a batch on its way
//! to the writers), merge (identity resolution), apply (one profile's write), evaluate (segments, scores,
//! computed traits), predict (a person's predictions), fit (models from everyone's summaries), decide (slots) and the streaming slot filler of edge delivery.

pub mod apply;
pub mod audiences;
pub mod decide;
pub mod delivery;
pub mod device;
pub mod evaluate;
pub mod fit;
pub mod ingest;
pub mod journeys;
pub mod merge;
pub mod predict;
pub mod pressure;
pub mod program;
pub mod write;
