//! lectern-ingest
