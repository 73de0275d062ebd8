//! Kernel capture: loading, attaching and pinning the eBPF programs, and reading their maps.
