//! Content-addressed blob store (placeholder; being written).
