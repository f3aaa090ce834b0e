//! The files trueip reads that it did not write: a provider's published range list (AWS,
//! Fastly and Azure JSON, plain CIDR lines), as `trueip ranges` fetches it and `serve`
//! reads it from the cache; and a hosts file (`TRUEIP_HOSTS_FILE`, for `trust_names`).
//! Nothing panics; a list it accepts holds only prefixes that re-parse to themselves and
//! that a provider could publish, at most `MAX_PREFIXES` of them; an error stays short
//! whatever the file held; a name's addresses are ones its lines write, at most 256.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trueip::Cidr;
use trueip::hosts::{HostsFile, lookup};
use trueip::providers::{MAX_PREFIXES, aws_services, edition, implausible};

const PROVIDERS: [&str; 5] = ["cloudfront", "fastly", "azure-front-door", "cloudflare", "lb-list"];

fn hosts_path() -> &'static std::path::Path {
    static P: OnceLock<std::path::PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("trueip-fuzz-hosts-{}", std::process::id()))
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, data)) = input.split_first() else { return };
    let provider = PROVIDERS[usize::from(pick) % PROVIDERS.len()];
    match edition(provider, data) {
        Ok(e) => {
            assert!(!e.cidrs.is_empty() && e.cidrs.len() <= MAX_PREFIXES);
            for cidr in &e.cidrs {
                assert_eq!(implausible(cidr), None, "{cidr}");
                assert_eq!(cidr.to_string().parse::<Cidr>().ok(), Some(*cidr));
            }
        }
        Err(e) => assert!(e.to_string().len() < 1000, "{provider}: {e}"),
    }
    match aws_services(data) {
        Ok(list) => assert!(list.len() <= MAX_PREFIXES),
        Err(e) => assert!(e.to_string().len() < 1000, "{e}"),
    }

    // The hosts file: the name is the input's first line, the file the rest.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (name, file) = text.split_once('\n').unwrap_or((text, ""));
    std::fs::write(hosts_path(), file).unwrap();
    if let Ok(addrs) = lookup(&HostsFile(hosts_path().to_path_buf()), name) {
        assert!(!addrs.is_empty() && addrs.len() <= 256);
        for ip in addrs {
            let written = file.lines().any(|line| {
                let mut words = line.split('#').next().unwrap_or_default().split_whitespace();
                words
                    .next()
                    .and_then(|w| w.parse::<IpAddr>().ok())
                    .is_some_and(|w| w.to_canonical() == ip)
                    && words.any(|w| w.trim_end_matches('.').eq_ignore_ascii_case(name))
            });
            assert!(written, "{ip} for {name:?}");
        }
    }
});
