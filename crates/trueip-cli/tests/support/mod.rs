//! What several test files of the `trueip` binary share.

/// For a test whose external program (or package) `missing` is not here: with
/// `TRUEIP_SKIP_EXTERNAL=1` a notice, and the caller skips the test; without it the test
/// fails, saying how to get it (`fix`).
pub fn skip_without(missing: &str, fix: &str) {
    assert!(
        std::env::var("TRUEIP_SKIP_EXTERNAL").as_deref() == Ok("1"),
        "{missing} is missing: {fix}; or set TRUEIP_SKIP_EXTERNAL=1 to skip the tests that need it"
    );
    eprintln!("SKIP: {missing} is missing; TRUEIP_SKIP_EXTERNAL=1");
}
