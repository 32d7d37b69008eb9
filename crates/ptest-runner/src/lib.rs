//! placeholder for resolution
