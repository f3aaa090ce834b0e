//! The config reader over arbitrary text: from the TOML parser through every check to
//! the state `trueip serve --check` builds, nothing panics, and every timeout it
//! accepts can be added to the clock.
#![no_main]

use std::path::PathBuf;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use trueip_gateway::config::{MAX_TIMEOUT, Overrides, Settings, parse_toml};
use trueip_gateway::metrics::Metrics;
use trueip_gateway::server::{Shared, State};

fuzz_target!(|data: &[u8]| {
    // Up to the first NUL, the config file (TOML has no NUL in it); after it, what every
    // provider range file the config names reads as. Without a NUL, those files fail
    // to read, as a missing file does.
    let (text, provider) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], data.get(i + 1..)),
        None => (data, None),
    };
    let text = String::from_utf8_lossy(text);
    let Ok(file) = parse_toml(&text) else { return };
    let mut read = |path: &str| {
        provider
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("no file {path}"))
    };
    let Ok(mut settings) = Settings::from_file(file, &Overrides::default(), &mut read) else {
        return;
    };
    let _ = trueip_gateway::describe(&settings);

    let l = &settings.limits;
    let mut timeouts = vec![
        l.header_read_timeout,
        l.idle_timeout,
        l.tls_handshake_timeout,
        l.proxy_protocol_timeout,
        l.shutdown_timeout,
        settings.tcp_connect_timeout,
    ];
    if let Some(u) = &settings.upstream {
        timeouts.extend([
            u.connect_timeout,
            u.response_timeout,
            u.body_timeout,
            u.pool_idle_timeout,
        ]);
    }
    let now = std::time::Instant::now();
    for t in timeouts {
        assert!(t <= MAX_TIMEOUT, "{t:?} accepted");
        assert!(now.checked_add(t).is_some(), "{t:?} overflows the clock");
    }

    // TLS files are read as the provider files are not: from the file system. Any path
    // the input names could be a device that never ends (/dev/zero), so each one is
    // replaced by a path that fails before the file system is asked (a NUL in it).
    for listener in &mut settings.listeners {
        if let Some(tls) = &mut listener.tls {
            tls.cert = PathBuf::from("cert\0");
            tls.key = PathBuf::from("key\0");
        }
    }
    let max = settings.limits.max_connections;
    if let Ok(state) = State::build(settings) {
        let _ = Shared::new(Arc::new(state), Arc::new(Metrics::default()), max);
    }
});
