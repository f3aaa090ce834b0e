//! The v2 type-length-value extensions: [`Tlvs`], [`Ssl`], and the walk that decodes them.
//!
//! Every type the specification defines (§2.2.1 to §2.2.7) gets a typed field, and of the
//! vendor types the two that say which private endpoint the client came through:
//!
//! | type | field | read by trueip's own programs |
//! |------|-------|-------------------------------|
//! | `0x01` ALPN | `alpn` | no |
//! | `0x02` AUTHORITY | `authority` | no |
//! | `0x03` CRC32C | `crc32c` | by this decoder: a header whose checksum fails is refused |
//! | `0x04` NOOP | none: skipped | padding |
//! | `0x05` UNIQUE_ID | `unique_id` | no |
//! | `0x20` SSL | `ssl` | `ssl.client`: a client on TLS to the balancer makes the scheme `https` |
//! | `0x30` NETNS | `netns` | no |
//! | `0xEA` AWS, subtype `0x01` | `aws_vpce_id` | explain, whoami and the gateway's access log |
//! | `0xEE` Azure, subtype `0x01` | `azure_link_id` | explain, whoami and the gateway's access log |
//! | anything else | `other`, raw, in wire order | no |
//!
//! The specification's own types stay typed although trueip reads few of them. This is a
//! library decoder: a caller that routes on ALPN or logs the client certificate's CN should
//! not have to parse the bytes again. Each costs one field and one match arm and allocates
//! only when present. Typing them is also what lets the decoder refuse a repeated ALPN, an
//! authority that is not UTF-8 or a unique id over 128 bytes; moved into `other`, such
//! headers would be accepted, which would loosen a decoder that faces untrusted bytes.
//! The rest of the vendor range (`0xE0` to `0xEF`) and the experimental and future ranges
//! stay raw in `other`: their layouts are each vendor's, and nothing here reads them.

use super::crc32c::crc32c_zeroing;
use super::cursor::Cursor;
use super::error::ProxyError;
use super::spec::*;

/// The `PP2_TYPE_SSL` TLV: how the client reached the proxy over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ssl {
    /// Bit field: `0x01` client used TLS, `0x02` client sent a certificate on
    /// this connection, `0x04` client sent a certificate on this TLS session.
    pub client: u8,
    /// Zero if the client certificate was presented and verified, non-zero otherwise.
    pub verify: u32,
    /// TLS version, e.g. `TLSv1.3` (sub-TLV `0x21`).
    pub version: Option<String>,
    /// Cipher, e.g. `ECDHE-RSA-AES128-GCM-SHA256` (sub-TLV `0x23`).
    pub cipher: Option<String>,
    /// Signature algorithm of the proxy's own certificate, e.g. `RSA-SHA256` (sub-TLV `0x24`).
    pub sig_alg: Option<String>,
    /// Key algorithm of the proxy's own certificate, e.g. `RSA2048` (sub-TLV `0x25`).
    pub key_alg: Option<String>,
    /// Common Name of the client certificate's subject (sub-TLV `0x22`).
    pub cn: Option<String>,
}

/// The v2 type-length-value extensions. Empty for v1 headers.
///
/// Each known type may appear at most once in a header; a repeated one is an
/// error rather than a silent "last one wins". `PP2_TYPE_NOOP` is skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tlvs {
    /// `PP2_TYPE_ALPN` (`0x01`): the negotiated application protocol, e.g. `h2`.
    pub alpn: Option<Vec<u8>>,
    /// `PP2_TYPE_AUTHORITY` (`0x02`): the host name the client asked for (TLS SNI).
    pub authority: Option<String>,
    /// `PP2_TYPE_CRC32C` (`0x03`): the header's checksum. Decoding verifies it.
    /// When encoding, `Some(_)` asks for a checksum; the value written is computed
    /// and this field's value is ignored.
    pub crc32c: Option<u32>,
    /// `PP2_TYPE_UNIQUE_ID` (`0x05`): an opaque connection id of at most 128 bytes.
    pub unique_id: Option<Vec<u8>>,
    /// `PP2_TYPE_SSL` (`0x20`) and its sub-TLVs.
    pub ssl: Option<Ssl>,
    /// `PP2_TYPE_NETNS` (`0x30`): the network namespace the connection arrived in.
    pub netns: Option<String>,
    /// AWS (`0xEA`) subtype `0x01`: the VPC endpoint id, e.g. `vpce-08d2bf15fac5001c9`.
    pub aws_vpce_id: Option<String>,
    /// Azure (`0xEE`) subtype `0x01`: the Private Link `LINKID`, little-endian on the wire.
    pub azure_link_id: Option<u32>,
    /// Every other TLV as `(type, value)`, in wire order. This includes `0xEA` and
    /// `0xEE` TLVs whose subtype is not `0x01`.
    pub other: Vec<(u8, Vec<u8>)>,
}

/// One TLV as found in the bytes.
pub(super) struct RawTlv<'a> {
    pub(super) kind: u8,
    pub(super) value: &'a [u8],
    /// Where the value starts, from the start of the header.
    value_offset: usize,
}

/// A TLV whose framing is broken; the caller turns it into the right error for
/// its level (header TLV or SSL sub-TLV).
pub(super) enum Framing {
    Truncated { offset: usize, available: usize },
    Overrun { kind: u8, offset: usize, declared: usize, available: usize },
}

/// The next TLV, `Ok(None)` at the end. Shared by header TLVs and SSL sub-TLVs,
/// which use the same framing.
pub(super) fn next_tlv<'a>(cur: &mut Cursor<'a>) -> Result<Option<RawTlv<'a>>, Framing> {
    if cur.is_empty() {
        return Ok(None);
    }
    let offset = cur.offset;
    let truncated = Framing::Truncated { offset, available: cur.rest.len() };
    let Some([kind, len_hi, len_lo]) = cur.array::<3>() else {
        return Err(truncated);
    };
    let declared = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let value_offset = cur.offset;
    let available = cur.rest.len();
    let value = cur.take(declared).ok_or(Framing::Overrun { kind, offset, declared, available })?;
    Ok(Some(RawTlv { kind, value, value_offset }))
}

pub(super) fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    duplicate: ProxyError,
) -> Result<(), ProxyError> {
    if slot.is_some() {
        return Err(duplicate);
    }
    *slot = Some(value);
    Ok(())
}

pub(super) fn tlv_string(value: &[u8], kind: u8) -> Result<String, ProxyError> {
    String::from_utf8(value.to_vec()).map_err(|_| ProxyError::V2InvalidTlv {
        tlv_type: kind,
        reason: "value is not valid UTF-8",
    })
}

/// Parses the TLVs that follow the address block, then checks the CRC32c if one
/// was present. `header` is the whole header, for the checksum.
pub(super) fn parse_tlvs(header: &[u8], mut cur: Cursor<'_>) -> Result<Tlvs, ProxyError> {
    let mut tlvs = Tlvs::default();
    let mut crc_value_offset = None;
    loop {
        let tlv = match next_tlv(&mut cur) {
            Ok(Some(tlv)) => tlv,
            Ok(None) => break,
            Err(Framing::Truncated { offset, available }) => {
                return Err(ProxyError::V2TlvTruncated { offset, available });
            }
            Err(Framing::Overrun { kind, offset, declared, available }) => {
                return Err(ProxyError::V2TlvOverrun {
                    tlv_type: kind,
                    offset,
                    declared,
                    available,
                });
            }
        };
        let kind = tlv.kind;
        let duplicate = ProxyError::V2DuplicateTlv { tlv_type: kind };
        let invalid = |reason| ProxyError::V2InvalidTlv { tlv_type: kind, reason };
        match (kind, tlv.value) {
            (PP2_TYPE_ALPN, value) => set_once(&mut tlvs.alpn, value.to_vec(), duplicate)?,
            (PP2_TYPE_AUTHORITY, value) => {
                set_once(&mut tlvs.authority, tlv_string(value, kind)?, duplicate)?;
            }
            (PP2_TYPE_CRC32C, &[a, b, c, d]) => {
                set_once(&mut tlvs.crc32c, u32::from_be_bytes([a, b, c, d]), duplicate)?;
                crc_value_offset = Some(tlv.value_offset);
            }
            (PP2_TYPE_CRC32C, _) => return Err(invalid("CRC32c value must be 4 bytes")),
            (PP2_TYPE_NOOP, _) => {}
            (PP2_TYPE_UNIQUE_ID, value) if value.len() > UNIQUE_ID_MAX => {
                return Err(invalid("unique id longer than 128 bytes"));
            }
            (PP2_TYPE_UNIQUE_ID, value) => {
                set_once(&mut tlvs.unique_id, value.to_vec(), duplicate)?;
            }
            (PP2_TYPE_SSL, value) => {
                set_once(&mut tlvs.ssl, parse_ssl(value, tlv.value_offset)?, duplicate)?;
            }
            (PP2_TYPE_NETNS, value) => {
                set_once(&mut tlvs.netns, tlv_string(value, kind)?, duplicate)?;
            }
            (PP2_TYPE_AWS, [PP2_SUBTYPE_AWS_VPCE_ID, id @ ..]) => {
                set_once(&mut tlvs.aws_vpce_id, tlv_string(id, kind)?, duplicate)?;
            }
            (PP2_TYPE_AZURE, &[PP2_SUBTYPE_AZURE_LINK_ID, a, b, c, d]) => {
                let link_id = u32::from_le_bytes([a, b, c, d]);
                set_once(&mut tlvs.azure_link_id, link_id, duplicate)?;
            }
            (PP2_TYPE_AZURE, [PP2_SUBTYPE_AZURE_LINK_ID, ..]) => {
                return Err(invalid("Azure link id must be 4 bytes"));
            }
            (_, value) => tlvs.other.push((kind, value.to_vec())),
        }
    }
    if let (Some(offset), Some(declared)) = (crc_value_offset, tlvs.crc32c) {
        let computed = crc32c_zeroing(header, offset);
        if computed != declared {
            return Err(ProxyError::V2Crc32cMismatch { declared, computed });
        }
    }
    Ok(tlvs)
}

/// Parses the SSL TLV's value. Unknown sub-TLVs are skipped after their framing
/// is checked: newer HAProxy versions send sub-types this struct has no field
/// for (e.g. the key-exchange group), and rejecting them would reject those
/// proxies.
pub(super) fn parse_ssl(value: &[u8], value_offset: usize) -> Result<Ssl, ProxyError> {
    let too_short = ProxyError::V2SslTooShort { len: value.len() };
    let Some((&client, rest)) = value.split_first() else {
        return Err(too_short);
    };
    let Some((&verify, subs)) = rest.split_first_chunk::<4>() else {
        return Err(too_short);
    };
    let mut ssl = Ssl { client, verify: u32::from_be_bytes(verify), ..Ssl::default() };
    let mut cur = Cursor::new(subs, value_offset + SSL_FIXED_LEN);
    loop {
        let sub = match next_tlv(&mut cur) {
            Ok(Some(sub)) => sub,
            Ok(None) => return Ok(ssl),
            Err(Framing::Truncated { offset, available }) => {
                return Err(ProxyError::V2SslSubTlvTruncated { offset, available });
            }
            Err(Framing::Overrun { kind, offset, declared, available }) => {
                return Err(ProxyError::V2SslSubTlvOverrun {
                    subtype: kind,
                    offset,
                    declared,
                    available,
                });
            }
        };
        let slot = match sub.kind {
            PP2_SUBTYPE_SSL_VERSION => &mut ssl.version,
            PP2_SUBTYPE_SSL_CN => &mut ssl.cn,
            PP2_SUBTYPE_SSL_CIPHER => &mut ssl.cipher,
            PP2_SUBTYPE_SSL_SIG_ALG => &mut ssl.sig_alg,
            PP2_SUBTYPE_SSL_KEY_ALG => &mut ssl.key_alg,
            _ => continue,
        };
        let text = String::from_utf8(sub.value.to_vec()).map_err(|_| {
            ProxyError::V2InvalidSslSubTlv { subtype: sub.kind, reason: "value is not valid UTF-8" }
        })?;
        set_once(slot, text, ProxyError::V2DuplicateSslSubTlv { subtype: sub.kind })?;
    }
}

/// Whether a TLV of this type and value decodes into a dedicated field (or is
/// dropped, for NOOP) rather than into `Tlvs::other`.
pub(super) fn has_own_field(kind: u8, value: &[u8]) -> bool {
    match kind {
        PP2_TYPE_ALPN | PP2_TYPE_AUTHORITY | PP2_TYPE_CRC32C | PP2_TYPE_NOOP
        | PP2_TYPE_UNIQUE_ID | PP2_TYPE_SSL | PP2_TYPE_NETNS => true,
        PP2_TYPE_AWS => value.first() == Some(&PP2_SUBTYPE_AWS_VPCE_ID),
        PP2_TYPE_AZURE => value.first() == Some(&PP2_SUBTYPE_AZURE_LINK_ID),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::fixtures::*;
    use crate::proxy_protocol::*;

    #[test]
    fn decodes_tlv_examples() {
        let cases: Vec<(&str, Vec<u8>, ProxyHeader)> = vec![
            (
                "ok: TCP6 with ALPN and authority",
                v2_tcp6_alpn_authority(),
                v2_tcp6_alpn_authority_header(),
            ),
            (
                "ok: CRC32c and unique id",
                v2_tcp4_crc_unique_id(),
                v2_tcp4_header(Tlvs {
                    crc32c: Some(0xB7DD_5C5E),
                    unique_id: Some(b"1234".to_vec()),
                    ..Tlvs::default()
                }),
            ),
            (
                "ok: SSL, NETNS, AWS, Azure and a custom TLV",
                v2_tcp4_ssl_and_friends(),
                v2_tcp4_ssl_and_friends_header(),
            ),
            (
                "ok: NOOP padding is skipped, empty ALPN kept",
                v2_tcp4_with(&[0x04, 0x00, 0x03, 0, 0, 0, 0x04, 0x00, 0x00, 0x01, 0x00, 0x00]),
                v2_tcp4_header(Tlvs { alpn: Some(Vec::new()), ..Tlvs::default() }),
            ),
            (
                "ok: SSL with no sub-TLVs, and an unknown sub-TLV skipped",
                v2_tcp4_with(&[
                    0x20, 0x00, 0x0A, 0x01, 0, 0, 0, 0x02, 0x26, 0x00, 0x02, b'x', b'y',
                ]),
                v2_tcp4_header(Tlvs {
                    ssl: Some(Ssl { client: 0x01, verify: 2, ..Ssl::default() }),
                    ..Tlvs::default()
                }),
            ),
            (
                "ok: AWS and Azure TLVs with other subtypes go to `other`, in order",
                v2_tcp4_with(&[
                    0xEE, 0x00, 0x02, 0x02, 0x09, // Azure subtype 2
                    0xEA, 0x00, 0x00, // AWS, empty
                    0xEA, 0x00, 0x02, 0x03, 0x07, // AWS subtype 3
                    0xF8, 0x00, 0x01, 0xFF, // future range
                ]),
                v2_tcp4_header(Tlvs {
                    other: vec![
                        (0xEE, vec![0x02, 0x09]),
                        (0xEA, vec![]),
                        (0xEA, vec![0x03, 0x07]),
                        (0xF8, vec![0xFF]),
                    ],
                    ..Tlvs::default()
                }),
            ),
            (
                "ok: unique id of exactly 128 bytes",
                v2_tcp4_with(&[&[0x05, 0x00, 0x80][..], &[0xAB; 128]].concat()),
                v2_tcp4_header(Tlvs { unique_id: Some(vec![0xAB; 128]), ..Tlvs::default() }),
            ),
        ];
        assert_v2_accepts(cases);
    }

    #[test]
    fn rejects_malformed_tlvs() {
        let mut bad_crc = v2_tcp4_crc_unique_id();
        bad_crc[12 + 16 + 3] ^= 0x01;
        let mut payload_changed = v2_tcp4_crc_unique_id();
        *payload_changed.last_mut().unwrap() = b'5';
        let cases: Vec<(&str, Vec<u8>, ProxyError)> = vec![
            (
                "fail: two bytes left where a TLV header needs three",
                v2_tcp4_with(&[0x01, 0x00]),
                ProxyError::V2TlvTruncated { offset: 28, available: 2 },
            ),
            (
                "fail: TLV length runs past the header",
                v2_tcp4_with(&[0x01, 0x00, 0x03, b'h', b'2']),
                ProxyError::V2TlvOverrun { tlv_type: 0x01, offset: 28, declared: 3, available: 2 },
            ),
            (
                "fail: second TLV runs past the header",
                v2_tcp4_with(&[0x04, 0x00, 0x00, 0xE0, 0xFF, 0xFF, 0x00]),
                ProxyError::V2TlvOverrun {
                    tlv_type: 0xE0,
                    offset: 31,
                    declared: 0xFFFF,
                    available: 1,
                },
            ),
            (
                "fail: SSL TLV shorter than client + verify",
                v2_tcp4_with(&[0x20, 0x00, 0x04, 0x01, 0, 0, 0]),
                ProxyError::V2SslTooShort { len: 4 },
            ),
            (
                "fail: SSL sub-TLV runs past the SSL TLV",
                // The SSL TLV is 9 bytes; its sub-TLV claims 2 but only 1 is left,
                // even though the header has bytes after the SSL TLV.
                v2_tcp4_with(&[
                    0x20, 0x00, 0x09, 0x01, 0, 0, 0, 0, 0x21, 0x00, 0x02, b'v', //
                    0x04, 0x00, 0x00,
                ]),
                ProxyError::V2SslSubTlvOverrun {
                    subtype: 0x21,
                    offset: 36,
                    declared: 2,
                    available: 1,
                },
            ),
            (
                "fail: SSL sub-TLV header truncated",
                v2_tcp4_with(&[0x20, 0x00, 0x07, 0x01, 0, 0, 0, 0, 0x21, 0x00]),
                ProxyError::V2SslSubTlvTruncated { offset: 36, available: 2 },
            ),
            (
                "fail: SSL sub-TLV repeated",
                v2_tcp4_with(&[
                    0x20, 0x00, 0x0B, 0x01, 0, 0, 0, 0, 0x22, 0x00, 0x00, 0x22, 0x00, 0x00,
                ]),
                ProxyError::V2DuplicateSslSubTlv { subtype: 0x22 },
            ),
            (
                "fail: SSL sub-TLV not UTF-8",
                v2_tcp4_with(&[0x20, 0x00, 0x09, 0x01, 0, 0, 0, 0, 0x22, 0x00, 0x01, 0xFF]),
                ProxyError::V2InvalidSslSubTlv {
                    subtype: 0x22,
                    reason: "value is not valid UTF-8",
                },
            ),
            (
                "fail: CRC32c does not match (checksum altered)",
                bad_crc,
                ProxyError::V2Crc32cMismatch { declared: 0xB6DD_5C5E, computed: 0xB7DD_5C5E },
            ),
            (
                "fail: CRC32c does not match (payload altered)",
                payload_changed.clone(),
                ProxyError::V2Crc32cMismatch {
                    declared: 0xB7DD_5C5E,
                    computed: crc32c_zeroing(&payload_changed, 31),
                },
            ),
            (
                "fail: CRC32c TLV of 3 bytes",
                v2_tcp4_with(&[0x03, 0x00, 0x03, 0, 0, 0]),
                ProxyError::V2InvalidTlv { tlv_type: 0x03, reason: "CRC32c value must be 4 bytes" },
            ),
            (
                "fail: two CRC32c TLVs",
                v2_tcp4_with(&[0x03, 0x00, 0x04, 0, 0, 0, 0, 0x03, 0x00, 0x04, 0, 0, 0, 0]),
                ProxyError::V2DuplicateTlv { tlv_type: 0x03 },
            ),
            (
                "fail: ALPN repeated (no silent last-one-wins)",
                v2_tcp4_with(&[0x01, 0x00, 0x01, b'a', 0x01, 0x00, 0x01, b'b']),
                ProxyError::V2DuplicateTlv { tlv_type: 0x01 },
            ),
            (
                "fail: authority not UTF-8",
                v2_tcp4_with(&[0x02, 0x00, 0x02, 0xC3, 0x28]),
                ProxyError::V2InvalidTlv { tlv_type: 0x02, reason: "value is not valid UTF-8" },
            ),
            (
                "fail: unique id of 129 bytes",
                v2_tcp4_with(&[&[0x05, 0x00, 0x81][..], &[0xAB; 129]].concat()),
                ProxyError::V2InvalidTlv {
                    tlv_type: 0x05,
                    reason: "unique id longer than 128 bytes",
                },
            ),
            (
                "fail: Azure link id of 3 bytes",
                v2_tcp4_with(&[0xEE, 0x00, 0x04, 0x01, 1, 2, 3]),
                ProxyError::V2InvalidTlv {
                    tlv_type: 0xEE,
                    reason: "Azure link id must be 4 bytes",
                },
            ),
            (
                "fail: AWS VPC endpoint id not UTF-8",
                v2_tcp4_with(&[0xEA, 0x00, 0x02, 0x01, 0xFF]),
                ProxyError::V2InvalidTlv { tlv_type: 0xEA, reason: "value is not valid UTF-8" },
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(decode(&input), Err(expected), "{name}");
        }
    }
}
