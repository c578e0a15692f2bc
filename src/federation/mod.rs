//! TODO(federation): filled in by its issue.
