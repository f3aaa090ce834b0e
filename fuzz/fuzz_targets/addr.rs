//! Address parsing: whatever parses prints and re-parses to itself, and our strict IPv4
//! parser never accepts what the standard library rejects.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = trueip::addr::parse_node(data) {
        assert_eq!(trueip::addr::parse_node(node.to_string().as_bytes()), Ok(node));
    }
    if let Ok(v4) = trueip::addr::parse_ipv4(data) {
        let text = std::str::from_utf8(data).expect("accepted IPv4 is ASCII");
        assert_eq!(text.parse::<std::net::Ipv4Addr>().ok(), Some(v4), "{text}");
    }
    let _ = trueip::addr::parse_ip_port_last_colon(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cidr) = text.parse::<trueip::Cidr>() {
            assert_eq!(cidr.to_string().parse::<trueip::Cidr>().ok(), Some(cidr));
        }
    }
});
