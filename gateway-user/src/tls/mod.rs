//! TLS for interception: Sluice's certificate authority and the leaves it mints.
