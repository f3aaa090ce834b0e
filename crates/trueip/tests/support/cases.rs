//! How many cases a property test runs: `PROPTEST_CASES` when set (proptest reads it only
//! for a default config, and these suites set their own count), else the suite's own.

/// `PROPTEST_CASES`, else `default`.
pub fn or(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}
