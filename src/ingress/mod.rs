//! The ways requests come in: [`http`] (the REST API under `/api/v1`).

pub mod http;
