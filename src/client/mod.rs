//! TODO(client): filled in by its issue.
