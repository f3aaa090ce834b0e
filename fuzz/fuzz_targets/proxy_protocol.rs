//! Decodes arbitrary bytes as a PROXY header: whatever decodes consumes no more than the
//! input and re-encodes to bytes that decode back to the same header; every prefix of a
//! whole header is `Incomplete` (never an error), and bytes after it change nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trueip::proxy_protocol::{
    Command, Decode, EncodeError, ProxyHeader, Version, decode, encode_v1, encode_v2,
};

fuzz_target!(|data: &[u8]| {
    let Ok(Decode::Complete { header, consumed }) = decode(data) else {
        return;
    };
    assert!(consumed >= 1 && consumed <= data.len());
    // A reader decodes each prefix as it arrives: none may be refused, nor complete
    // early with another header.
    for end in 0..consumed {
        match decode(&data[..end]) {
            Ok(Decode::Incomplete { needed }) => assert!(needed >= 1 && end + needed <= consumed),
            other => panic!("prefix of {end} bytes: {other:?}"),
        }
    }
    assert_eq!(
        decode(&data[..consumed]),
        Ok(Decode::Complete { header: header.clone(), consumed })
    );
    match header.version {
        Version::V1 => {
            let mut out = Vec::new();
            encode_v1(header.addrs.as_ref(), &mut out);
            assert_eq!(redecode(&out).addrs, header.addrs);
        }
        Version::V2 => {
            let mut out = Vec::new();
            match encode_v2(&header, &mut out) {
                Ok(()) => {
                    let mut again = redecode(&out);
                    // The encoder writes a checksum of its own bytes, which differ
                    // from the input's (NOOPs and unknown SSL sub-TLVs are dropped).
                    assert_eq!(again.tlvs.crc32c.is_some(), header.tlvs.crc32c.is_some());
                    again.tlvs.crc32c = header.tlvs.crc32c;
                    assert_eq!(again, header);
                }
                // AF_UNIX: decoded without its addresses, so not re-encodable.
                Err(EncodeError::TransportWithoutAddresses { .. }) => {
                    assert!(header.command == Command::Proxy && header.addrs.is_none());
                }
                Err(error) => panic!("decoded header does not re-encode: {error}: {header:?}"),
            }
        }
    }
});

fn redecode(encoded: &[u8]) -> ProxyHeader {
    match decode(encoded) {
        Ok(Decode::Complete { header, consumed }) if consumed == encoded.len() => header,
        other => panic!("re-encoding {:?} decoded as {other:?}", encoded.escape_ascii()),
    }
}
