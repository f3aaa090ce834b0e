//! X-Forwarded-For: split into lines at NUL, walk every element from the right; each
//! element that parses as an address must print and re-parse to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trueip::entry::Entry;

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    for entry in trueip::xff::Rev::new(&lines) {
        if let Entry::Addr(node) = entry {
            let printed = node.to_string();
            assert_eq!(trueip::addr::parse_node(printed.as_bytes()), Ok(node), "{printed}");
        }
    }
    let _ = trueip::xff::first(&lines);
});
