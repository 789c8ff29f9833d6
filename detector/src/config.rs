//! Configuration: /etc/detector/detector.toml (issue 4).
