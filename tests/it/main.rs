//! Integration tests: one binary, real PostgreSQL, one database per test.

mod helpers;
mod projections;
mod store;
