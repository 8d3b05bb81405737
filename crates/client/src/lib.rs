//! Typed REST client for Weft's /v1 API, used by the CLI, tests and benchmarks.
