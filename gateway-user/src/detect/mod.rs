//! Protocol detection: a bounded, deadline-limited peek at the first bytes of a connection.
