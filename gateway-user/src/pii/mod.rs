//! PII scanning of request bodies: detectors, and a streaming scanner with a bounded window.
