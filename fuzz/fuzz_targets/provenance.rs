//! The signed client header (`[upstream] sign`, verified by the app's adapters): a value
//! the input writes never verifies, whatever it holds, and its rejection message stays
//! short; a claim the gateway signs verifies to itself once (then is a replay), and any
//! change to one byte of the value, or to the request it was signed for (but for the
//! case of the host), is refused.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use trueip::provenance::{Claim, Key, Rejected, RequestLine, Verifier, sign};
use trueip::{ListHeader, Node, Source};

const NOW: u64 = 1_765_020_000;

fn key() -> &'static Key {
    static K: OnceLock<Key> = OnceLock::new();
    K.get_or_init(|| Key::new(&[7u8; 32]).unwrap())
}

fn verifier() -> Verifier {
    Verifier::new([key().clone()], Duration::from_secs(30)).unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn claim(u: &mut Unstructured<'_>) -> Result<Claim> {
    let ip: std::net::IpAddr = if u.arbitrary()? {
        std::net::Ipv4Addr::from(u.arbitrary::<u32>()?).into()
    } else {
        std::net::Ipv6Addr::from(u.arbitrary::<u128>()?).into()
    };
    let port: Option<u16> = u.arbitrary()?;
    let header = if u.arbitrary()? { ListHeader::XForwardedFor } else { ListHeader::Forwarded };
    let source = match u.int_in_range(0..=5u8)? {
        0 => Source::Peer,
        1 => Source::ProxyProtocol,
        2 => Source::List { header, from_right: u.arbitrary()? },
        3 => Source::Header,
        4 => Source::Query,
        _ => Source::Cookie,
    };
    Ok(Claim {
        client: Node { ip, port },
        source,
        hops: u.arbitrary()?,
        time: NOW - u.int_in_range(0..=30)?,
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let method: &str = u.arbitrary()?;
    let host: &str = u.arbitrary()?;
    let target: &str = u.arbitrary()?;
    let request = RequestLine { method, host, target };
    if u.arbitrary()? {
        // A value the input wrote.
        let value: &[u8] = u.arbitrary()?;
        let why = verifier()
            .verify_at(Some(value), &request, at(NOW))
            .expect_err("forged value verified");
        assert!(why.to_string().len() < 200, "{why}");
        return Ok(());
    }
    let claim = claim(u)?;
    let mut value = String::new();
    sign(key(), &claim, &request, &mut value);
    let v = verifier();
    assert_eq!(v.verify_at(Some(value.as_bytes()), &request, at(NOW)), Ok(claim), "{value}");
    assert_eq!(v.verify_at(Some(value.as_bytes()), &request, at(NOW)), Err(Rejected::Replayed));
    // One byte of the value changed.
    let mut bytes = value.clone().into_bytes();
    let i = u.choose_index(bytes.len())?;
    let b: u8 = u.arbitrary()?;
    if bytes[i] != b {
        bytes[i] = b;
        let got = verifier().verify_at(Some(&bytes), &request, at(NOW));
        assert!(got.is_err(), "{:?} verified as {got:?}", bytes.escape_ascii().to_string());
    }
    // The same value for another request.
    let other: &str = u.arbitrary()?;
    for changed in [
        RequestLine { method: other, ..request },
        RequestLine { host: other, ..request },
        RequestLine { target: other, ..request },
    ] {
        let same = changed.method == method
            && changed.host.eq_ignore_ascii_case(host)
            && changed.target == target;
        let got = verifier().verify_at(Some(value.as_bytes()), &changed, at(NOW));
        assert_eq!(got.is_ok(), same, "{changed:?}: {got:?}");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
