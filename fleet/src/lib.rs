//! Fleets.
