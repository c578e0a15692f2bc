//! TODO(server): filled in by its issue.
