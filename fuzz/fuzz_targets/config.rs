//! The config reader over arbitrary text: from the TOML parser through every check to
//! the state `trueip serve --check` builds, nothing panics, and every timeout it
//! accepts can be added to the clock.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trueip_gateway::testing::{Config, MAX_TIMEOUT};

fuzz_target!(|data: &[u8]| {
    // Up to the first NUL, the config file (TOML has no NUL in it); after it, what every
    // provider range file the config names reads as. Without a NUL, those files fail
    // to read, as a missing file does.
    let (text, provider) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], data.get(i + 1..)),
        None => (data, None),
    };
    let text = String::from_utf8_lossy(text);
    let mut read =
        |path: &str| provider.map(<[u8]>::to_vec).ok_or_else(|| format!("no file {path}"));
    let Ok(config) = Config::check(&text, &mut read) else {
        return;
    };

    let now = std::time::Instant::now();
    for t in config.timeouts() {
        assert!(t <= MAX_TIMEOUT, "{t:?} accepted");
        assert!(now.checked_add(t).is_some(), "{t:?} overflows the clock");
    }

    // `--check`'s description, and the server state. TLS files are read as the provider
    // files are not: from the file system, so the build leaves them out.
    let _ = config.build_without_tls_files();
});
