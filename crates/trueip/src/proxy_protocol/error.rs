//! Why bytes are not a PROXY header ([`ProxyError`]). Decoding errors name the field or
//! byte offset at fault and quote what arrived, so that whoever runs the proxy in front can
//! find the bug in its sender. (Why a header cannot be written is the encoder's own error,
//! [`EncodeError`](super::EncodeError).)

use std::fmt;

use super::spec::{SSL_FIXED_LEN, V1_MAX_LEN};

/// Which field of a v1 line an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum V1Field {
    /// The fourth field, e.g. `192.0.2.1`.
    SourceAddress,
    /// The fifth field.
    DestinationAddress,
    /// The sixth field, e.g. `56324`.
    SourcePort,
    /// The seventh field.
    DestinationPort,
}

impl fmt::Display for V1Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Field::SourceAddress => "source address",
            V1Field::DestinationAddress => "destination address",
            V1Field::SourcePort => "source port",
            V1Field::DestinationPort => "destination port",
        })
    }
}

/// Why bytes are not a valid PROXY header.
///
/// Apart from [`ProxyError::NotProxy`] (the peer is not speaking the protocol at
/// all: check that it is configured to send it), every variant means the sender
/// produced a malformed header; the fix belongs to the proxy in front. Offsets are
/// byte positions from the start of the header.
///
/// The message quotes the sender's bytes as written (lossily decoded), not escaped: whoever
/// shows it escapes them once, for where it goes ([`shown`](crate::shown): log mode for a
/// log line). Shown as it is, a sender could write a line break or a terminal control.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// Neither `PROXY ` nor the v2 signature starts the buffer.
    NotProxy {
        /// The first bytes received (at most 16).
        prefix: Vec<u8>,
    },
    /// A v1 line must start with exactly `PROXY ` (uppercase, one space).
    V1BadPrefix {
        /// The first bytes received (at most 16).
        prefix: Vec<u8>,
    },
    /// No CRLF within the first [`V1_MAX_LEN`] bytes.
    V1MissingCrlf,
    /// A CR not followed by LF, or an LF not preceded by CR.
    V1StrayLineBreak {
        /// Where the lone CR or LF is.
        offset: usize,
    },
    /// The line does not have the shape `PROXY <proto> <src> <dst> <sport> <dport>`
    /// with single spaces.
    V1Malformed {
        /// The line, without CRLF (lossily decoded).
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The protocol field is not `TCP4`, `TCP6` or `UNKNOWN` (case matters).
    V1UnknownProtocol {
        /// The protocol field as received (lossily decoded).
        protocol: String,
    },
    /// An address field is not a valid address of the line's family.
    V1InvalidAddress {
        /// Which address.
        field: V1Field,
        /// The field as received (lossily decoded).
        value: String,
        /// `"IPv4"` or `"IPv6"`.
        expected: &'static str,
    },
    /// An IPv4 octet with a leading zero, which some parsers read as octal.
    V1AddressLeadingZero {
        /// Which address.
        field: V1Field,
        /// The field as received.
        value: String,
    },
    /// An IPv6 address on a `TCP4` line, or an IPv4 address on a `TCP6` line.
    V1FamilyMismatch {
        /// `"TCP4"` or `"TCP6"`.
        protocol: &'static str,
        /// Which address.
        field: V1Field,
        /// The field as received.
        value: String,
    },
    /// A port field that is not a decimal number.
    V1InvalidPort {
        /// Which port.
        field: V1Field,
        /// The field as received (lossily decoded).
        value: String,
    },
    /// A port with a leading zero.
    V1PortLeadingZero {
        /// Which port.
        field: V1Field,
        /// The field as received.
        value: String,
    },
    /// A port above 65535.
    V1PortOutOfRange {
        /// Which port.
        field: V1Field,
        /// The field as received.
        value: String,
    },
    /// The buffer does not start with the 12-byte v2 signature.
    V2BadSignature {
        /// The first bytes received (at most 16).
        prefix: Vec<u8>,
    },
    /// The version nibble (high half of byte 13) is not 2.
    V2BadVersion {
        /// The nibble received.
        version: u8,
    },
    /// The command nibble (low half of byte 13) is neither LOCAL (0) nor PROXY (1).
    V2BadCommand {
        /// The nibble received.
        command: u8,
    },
    /// Byte 14 is not one of `0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32`.
    V2BadFamilyTransport {
        /// The byte received.
        byte: u8,
    },
    /// The declared length is shorter than the family's address block.
    V2AddressBlockTooShort {
        /// `"AF_INET"`, `"AF_INET6"` or `"AF_UNIX"`.
        family: &'static str,
        /// Bytes the family's address block takes.
        required: usize,
        /// Bytes the header declares after its fixed part.
        declared: usize,
    },
    /// Fewer than the 3 bytes of a TLV's type and length remain in the header.
    V2TlvTruncated {
        /// Where the TLV starts.
        offset: usize,
        /// Bytes left in the header.
        available: usize,
    },
    /// A TLV's length runs past the end of the header.
    V2TlvOverrun {
        /// The TLV's type.
        tlv_type: u8,
        /// Where the TLV starts.
        offset: usize,
        /// The length it declares.
        declared: usize,
        /// Bytes left in the header after its type and length.
        available: usize,
    },
    /// A known TLV whose value is malformed (wrong size, invalid UTF-8, too long).
    V2InvalidTlv {
        /// The TLV's type.
        tlv_type: u8,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A known TLV appears more than once.
    V2DuplicateTlv {
        /// The TLV's type.
        tlv_type: u8,
    },
    /// The SSL TLV is shorter than its 5-byte `client` + `verify` prefix.
    V2SslTooShort {
        /// The SSL TLV's length.
        len: usize,
    },
    /// Fewer than 3 bytes of a sub-TLV's type and length remain in the SSL TLV.
    V2SslSubTlvTruncated {
        /// Where the sub-TLV starts.
        offset: usize,
        /// Bytes left in the SSL TLV.
        available: usize,
    },
    /// An SSL sub-TLV's length runs past the end of the SSL TLV.
    V2SslSubTlvOverrun {
        /// The sub-TLV's type.
        subtype: u8,
        /// Where the sub-TLV starts.
        offset: usize,
        /// The length it declares.
        declared: usize,
        /// Bytes left in the SSL TLV after its type and length.
        available: usize,
    },
    /// A known SSL sub-TLV whose value is malformed.
    V2InvalidSslSubTlv {
        /// The sub-TLV's type.
        subtype: u8,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A known SSL sub-TLV appears more than once.
    V2DuplicateSslSubTlv {
        /// The sub-TLV's type.
        subtype: u8,
    },
    /// The header carries a CRC32c TLV that does not match its bytes.
    V2Crc32cMismatch {
        /// The checksum in the TLV.
        declared: u32,
        /// The checksum of the header as received.
        computed: u32,
    },
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxy { prefix } => write!(
                f,
                "PROXY: expected \"PROXY \" or the v2 signature, got \"{}\"; \
                 is the peer configured to send the PROXY protocol?",
                String::from_utf8_lossy(prefix)
            ),
            ProxyError::V1BadPrefix { prefix } => write!(
                f,
                "PROXY v1: line must start with \"PROXY \" (uppercase, one space), got \"{}\"",
                String::from_utf8_lossy(prefix)
            ),
            ProxyError::V1MissingCrlf => {
                write!(f, "PROXY v1: no CRLF within the first {V1_MAX_LEN} bytes")
            }
            ProxyError::V1StrayLineBreak { offset } => {
                write!(f, "PROXY v1: lone CR or LF at byte {offset}; the line must end with CRLF")
            }
            ProxyError::V1Malformed { line, reason } => {
                write!(f, "PROXY v1: {reason} in \"{line}\"")
            }
            ProxyError::V1UnknownProtocol { protocol } => {
                write!(f, "PROXY v1: protocol \"{protocol}\" is not TCP4, TCP6 or UNKNOWN")
            }
            ProxyError::V1InvalidAddress { field, value, expected } => {
                write!(f, "PROXY v1: {field} \"{value}\" is not a valid {expected} address")
            }
            ProxyError::V1AddressLeadingZero { field, value } => {
                write!(f, "PROXY v1: {field} \"{value}\" has an octet with a leading zero")
            }
            ProxyError::V1FamilyMismatch { protocol, field, value } => {
                write!(f, "PROXY v1: {field} \"{value}\" does not match protocol {protocol}")
            }
            ProxyError::V1InvalidPort { field, value } => {
                write!(f, "PROXY v1: {field} \"{value}\" is not a decimal number")
            }
            ProxyError::V1PortLeadingZero { field, value } => {
                write!(f, "PROXY v1: {field} \"{value}\" has a leading zero")
            }
            ProxyError::V1PortOutOfRange { field, value } => {
                write!(f, "PROXY v1: {field} \"{value}\" out of range")
            }
            ProxyError::V2BadSignature { prefix } => {
                write!(f, "PROXY v2: bad signature, got \"{}\"", String::from_utf8_lossy(prefix))
            }
            ProxyError::V2BadVersion { version } => {
                write!(f, "PROXY v2: version {version:#x}, expected 0x2")
            }
            ProxyError::V2BadCommand { command } => {
                write!(f, "PROXY v2: command {command:#x} is neither LOCAL (0x0) nor PROXY (0x1)")
            }
            ProxyError::V2BadFamilyTransport { byte } => write!(
                f,
                "PROXY v2: family/transport byte {byte:#04x} is not one the specification defines"
            ),
            ProxyError::V2AddressBlockTooShort { family, required, declared } => write!(
                f,
                "PROXY v2: {family} addresses take {required} bytes but the header declares {declared}"
            ),
            ProxyError::V2TlvTruncated { offset, available } => write!(
                f,
                "PROXY v2: TLV at byte {offset} needs 3 bytes of type and length, {available} left"
            ),
            ProxyError::V2TlvOverrun { tlv_type, offset, declared, available } => write!(
                f,
                "PROXY v2: TLV {tlv_type:#04x} at byte {offset} declares {declared} bytes, \
                 {available} left in the header"
            ),
            ProxyError::V2InvalidTlv { tlv_type, reason } => {
                write!(f, "PROXY v2: TLV {tlv_type:#04x}: {reason}")
            }
            ProxyError::V2DuplicateTlv { tlv_type } => {
                write!(f, "PROXY v2: TLV {tlv_type:#04x} appears more than once")
            }
            ProxyError::V2SslTooShort { len } => write!(
                f,
                "PROXY v2: SSL TLV is {len} bytes, needs at least {SSL_FIXED_LEN} (client, verify)"
            ),
            ProxyError::V2SslSubTlvTruncated { offset, available } => write!(
                f,
                "PROXY v2: SSL sub-TLV at byte {offset} needs 3 bytes of type and length, \
                 {available} left"
            ),
            ProxyError::V2SslSubTlvOverrun { subtype, offset, declared, available } => write!(
                f,
                "PROXY v2: SSL sub-TLV {subtype:#04x} at byte {offset} declares {declared} bytes, \
                 {available} left in the SSL TLV"
            ),
            ProxyError::V2InvalidSslSubTlv { subtype, reason } => {
                write!(f, "PROXY v2: SSL sub-TLV {subtype:#04x}: {reason}")
            }
            ProxyError::V2DuplicateSslSubTlv { subtype } => {
                write!(f, "PROXY v2: SSL sub-TLV {subtype:#04x} appears more than once")
            }
            ProxyError::V2Crc32cMismatch { declared, computed } => write!(
                f,
                "PROXY v2: CRC32c mismatch: header says {declared:#010x}, bytes give {computed:#010x}"
            ),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Bytes quoted back in "not a PROXY header" errors.
const QUOTED_PREFIX_LEN: usize = 16;

/// The first bytes of `buf`, for an error that says what arrived instead of a header.
pub(super) fn quoted_prefix(buf: &[u8]) -> Vec<u8> {
    buf.get(..QUOTED_PREFIX_LEN).unwrap_or(buf).to_vec()
}

#[cfg(test)]
mod tests {
    use crate::proxy_protocol::decode;

    #[test]
    fn messages_name_what_was_parsed() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"PROXY TCP4 1.1.1.1 2.2.2.2 99999 2\r\n",
                "PROXY v1: source port \"99999\" out of range",
            ),
            (
                b"PROXY TCP4 010.0.0.1 2.2.2.2 1 2\r\n",
                "PROXY v1: source address \"010.0.0.1\" has an octet with a leading zero",
            ),
            (
                b"PROXY TCP4 1.1.1.1 ::1 1 2\r\n",
                "PROXY v1: destination address \"::1\" does not match protocol TCP4",
            ),
            (
                b"SSH-2.0-OpenSSH_9.6\r\n",
                "PROXY: expected \"PROXY \" or the v2 signature, got \"SSH-2.0-OpenSSH_\"; \
                 is the peer configured to send the PROXY protocol?",
            ),
            (
                &[
                    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21,
                    0x11, 0x00, 0x00,
                ],
                "PROXY v2: AF_INET addresses take 12 bytes but the header declares 0",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input).unwrap_err().to_string(), expected);
        }
    }

    /// Fails when a sender's bytes are quoted with `{:?}`: log mode escaped that escape's `\`.
    #[test]
    fn a_senders_bytes_are_escaped_once_in_log_mode() {
        let line = "PROXY TCP4 1.2.3.4\u{2028}\u{1b}[2J 5.6.7.8 1 2\r\n";
        let e = decode(line.as_bytes()).unwrap_err();
        assert_eq!(
            crate::shown::log_text(&e).to_string(),
            r#"PROXY v1: source address "1.2.3.4\xe2\x80\xa8\x1b[2J" is not a valid IPv4 address"#
        );
        let e = decode(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").unwrap_err();
        assert!(
            crate::shown::log_text(&e).to_string().contains(r#"got "\x16\x03\x01\x02\x00"#),
            "{e}"
        );
    }
}
