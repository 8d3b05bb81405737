//! Incremental compiler from intent to logical pipelines and per-host views (pure, no I/O).
