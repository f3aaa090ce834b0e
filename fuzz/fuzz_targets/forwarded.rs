//! RFC 7239 Forwarded: walk elements from the right; every element that parses
//! re-prints (for/by/proto/host) to an element that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trueip::forwarded::{Rev, parse_element, write_element};

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    for element in Rev::new(&lines).take(64) {
        let Ok(element) = element else { continue };
        let proto = element.proto.map(|v| String::from_utf8_lossy(&v.unescaped()).into_owned());
        let host = element.host.map(|v| String::from_utf8_lossy(&v.unescaped()).into_owned());
        let mut out = String::new();
        let for_node = element.for_node.node();
        let by = element.by.and_then(|b| b.node());
        write_element(&mut out, for_node.as_ref(), by.as_ref(), proto.as_deref(), host.as_deref());
        let again = parse_element(out.as_bytes()).expect("printed element parses");
        assert_eq!(again.for_node.node(), for_node, "{out}");
        assert_eq!(again.by.and_then(|b| b.node()), by, "{out}");
        assert_eq!(
            again.proto.map(|v| String::from_utf8_lossy(&v.unescaped()).into_owned()),
            proto
        );
        assert_eq!(again.host.map(|v| String::from_utf8_lossy(&v.unescaped()).into_owned()), host);
    }
});
