//! Provider range lists, read from the formats the providers publish.
//!
//! The caller fetches or reads the bytes (this crate does no I/O); these functions
//! turn them into prefixes for a [`TrustSet`](crate::TrustSet) and reject anything
//! they cannot read, naming the line or entry.
//!
//! | provider | published at | format | function |
//! | --- | --- | --- | --- |
//! | AWS (CloudFront origin-facing, ...) | `https://ip-ranges.amazonaws.com/ip-ranges.json` | JSON, filtered by `service` | [`aws_ip_ranges`] |
//! | Cloudflare | `https://www.cloudflare.com/ips-v4`, `/ips-v6` | one CIDR per line | [`cidr_lines`] |
//! | Fastly | `https://api.fastly.com/public-ip-list` | JSON `addresses`, `ipv6_addresses` | [`fastly_public_ip_list`] |
//! | Azure Front Door | Azure service tags JSON | `values[name=AzureFrontDoor.Backend].properties.addressPrefixes` | [`azure_service_tags`] |

use std::net::IpAddr;

use crate::error::ConfigError;
use crate::trust::Cidr;

/// The AWS service whose ranges CloudFront uses to reach origins.
pub const CLOUDFRONT_ORIGIN_FACING: &str = "CLOUDFRONT_ORIGIN_FACING";

/// The Azure service tag of Front Door's back end (the addresses it connects to origins from).
pub const AZURE_FRONT_DOOR_BACKEND: &str = "AzureFrontDoor.Backend";

/// The most prefixes any list may hold; AWS's whole list is about 10,000.
pub const MAX_PREFIXES: usize = 1_000_000;

/// One CIDR per line (Cloudflare's `ips-v4` / `ips-v6`, or any plain list).
/// Blank lines and `#` comments are skipped.
pub fn cidr_lines(text: &[u8]) -> Result<Vec<Cidr>, ConfigError> {
    let text =
        std::str::from_utf8(text).map_err(|_| ConfigError::new("range list is not UTF-8 text"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if out.len() == MAX_PREFIXES {
            return Err(ConfigError::new(format!(
                "range list holds more than {MAX_PREFIXES} prefixes"
            )));
        }
        out.push(line.parse::<Cidr>().map_err(|e| e.at(format!("line {}", i + 1)))?);
    }
    if out.is_empty() {
        return Err(
            ConfigError::new("range list holds no prefixes").hint("is this the right file?")
        );
    }
    Ok(out)
}

#[cfg(feature = "serde")]
mod json {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Aws {
        prefixes: Vec<AwsV4>,
        #[serde(default)]
        ipv6_prefixes: Vec<AwsV6>,
    }
    #[derive(Deserialize)]
    struct AwsV4 {
        ip_prefix: String,
        service: String,
    }
    #[derive(Deserialize)]
    struct AwsV6 {
        ipv6_prefix: String,
        service: String,
    }

    /// AWS `ip-ranges.json`, keeping the prefixes of one `service`
    /// (e.g. [`CLOUDFRONT_ORIGIN_FACING`]).
    pub fn aws_ip_ranges(json: &[u8], service: &str) -> Result<Vec<Cidr>, ConfigError> {
        let doc: Aws = serde_json::from_slice(json)
            .map_err(|e| ConfigError::new(format!("not an AWS ip-ranges.json: {e}")))?;
        let v4 = doc
            .prefixes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.service == service)
            .map(|(i, p)| (format!("prefixes[{i}]"), &p.ip_prefix));
        let v6 = doc
            .ipv6_prefixes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.service == service)
            .map(|(i, p)| (format!("ipv6_prefixes[{i}]"), &p.ipv6_prefix));
        let out = parse_all(v4.chain(v6))?;
        if out.is_empty() {
            return Err(ConfigError::new(format!(
                "AWS ip-ranges.json has no prefixes for service \"{service}\""
            ))
            .hint(format!("services are upper-case, e.g. {CLOUDFRONT_ORIGIN_FACING}")));
        }
        Ok(out)
    }

    /// Every prefix of AWS's `ip-ranges.json` with the service it is listed under (a
    /// prefix appears once per service: `AMAZON` holds them all).
    pub fn aws_services(json: &[u8]) -> Result<Vec<(Cidr, String)>, ConfigError> {
        let doc: Aws = serde_json::from_slice(json)
            .map_err(|e| ConfigError::new(format!("not an AWS ip-ranges.json: {e}")))?;
        let v4 = doc.prefixes.iter().map(|p| (&p.ip_prefix, &p.service));
        let v6 = doc.ipv6_prefixes.iter().map(|p| (&p.ipv6_prefix, &p.service));
        let mut out = Vec::new();
        for (prefix, service) in v4.chain(v6) {
            if out.len() == MAX_PREFIXES * 4 {
                return Err(ConfigError::new("AWS ip-ranges.json holds too many prefixes"));
            }
            out.push((prefix.parse::<Cidr>()?, service.clone()));
        }
        Ok(out)
    }

    #[derive(Deserialize)]
    struct Fastly {
        addresses: Vec<String>,
        #[serde(default)]
        ipv6_addresses: Vec<String>,
    }

    /// Fastly's public IP list (`{"addresses": [...], "ipv6_addresses": [...]}`).
    pub fn fastly_public_ip_list(json: &[u8]) -> Result<Vec<Cidr>, ConfigError> {
        let doc: Fastly = serde_json::from_slice(json)
            .map_err(|e| ConfigError::new(format!("not a Fastly public-ip-list: {e}")))?;
        let v4 = doc.addresses.iter().enumerate().map(|(i, p)| (format!("addresses[{i}]"), p));
        let v6 =
            doc.ipv6_addresses.iter().enumerate().map(|(i, p)| (format!("ipv6_addresses[{i}]"), p));
        parse_all(v4.chain(v6))
    }

    #[derive(Deserialize)]
    struct Azure {
        values: Vec<AzureTag>,
    }
    #[derive(Deserialize)]
    struct AzureTag {
        name: String,
        properties: AzureProps,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AzureProps {
        address_prefixes: Vec<String>,
    }

    /// Azure service tags JSON, keeping one tag (e.g. [`AZURE_FRONT_DOOR_BACKEND`]).
    pub fn azure_service_tags(json: &[u8], tag: &str) -> Result<Vec<Cidr>, ConfigError> {
        let doc: Azure = serde_json::from_slice(json)
            .map_err(|e| ConfigError::new(format!("not an Azure service tags file: {e}")))?;
        let entry = doc.values.iter().find(|v| v.name == tag).ok_or_else(|| {
            ConfigError::new(format!("Azure service tags file has no tag \"{tag}\""))
                .hint(format!("Front Door's is {AZURE_FRONT_DOOR_BACKEND}"))
        })?;
        parse_all(
            entry
                .properties
                .address_prefixes
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("addressPrefixes[{i}]"), p)),
        )
    }

    /// The fields that date an edition, in any provider's JSON.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Dated {
        sync_token: Option<String>,
        create_date: Option<String>,
        change_number: Option<u64>,
    }

    /// The edition token and date of a provider's JSON list (AWS `syncToken` and
    /// `createDate`, Azure `changeNumber`), `None` where it has none.
    pub(super) fn token(json: &[u8]) -> Result<(Option<u64>, Option<String>), ConfigError> {
        let doc: Dated = serde_json::from_slice(json)
            .map_err(|e| ConfigError::new(format!("unreadable edition fields: {e}")))?;
        let sync = doc
            .sync_token
            .map(|t| {
                t.trim().parse::<u64>().map_err(|_| {
                    ConfigError::new(format!("syncToken \"{t}\" is not a number"))
                        .hint("AWS writes Unix seconds as a string")
                })
            })
            .transpose()?;
        // Shown to whoever reads `trueip ranges show`: a date, or nothing. A mirror could
        // otherwise write terminal escapes there.
        let date = doc.create_date.filter(|d| {
            !d.is_empty() && d.len() <= 32 && d.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        });
        Ok((sync.or(doc.change_number), date))
    }

    fn parse_all<'a>(
        items: impl Iterator<Item = (String, &'a String)>,
    ) -> Result<Vec<Cidr>, ConfigError> {
        let mut out = Vec::new();
        for (at, text) in items {
            if out.len() == MAX_PREFIXES {
                return Err(ConfigError::new(format!(
                    "range list holds more than {MAX_PREFIXES} prefixes"
                )));
            }
            out.push(text.parse::<Cidr>().map_err(|e| e.at(at))?);
        }
        Ok(out)
    }
}

#[cfg(feature = "serde")]
pub use json::{aws_ip_ranges, aws_services, azure_service_tags, fastly_public_ip_list};

/// One edition of a provider's list: its prefixes for the provider, and the provider's
/// own mark of its age where the format has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edition {
    /// The prefixes the provider's preset trusts (for AWS: one service's).
    pub cidrs: Vec<Cidr>,
    /// A number that grows with every edition: AWS `syncToken` (Unix seconds), Azure
    /// `changeNumber`. `None` for lists without one (Cloudflare, Fastly, plain text).
    pub token: Option<u64>,
    /// The provider's own date, as written (AWS `createDate`), for display.
    pub published: Option<String>,
}

impl Edition {
    /// How many IPv4 and IPv6 prefixes it holds.
    pub fn counts(&self) -> (usize, usize) {
        let v4 = self.cidrs.iter().filter(|c| c.network().is_ipv4()).count();
        (v4, self.cidrs.len() - v4)
    }
}

/// Reads a whole published list for `provider` ([`parse_for`]) together with its edition
/// token. A list with no prefix for the provider is an error: trusting nothing would
/// turn every request from the provider into one from the provider's own address.
pub fn edition(provider: &str, bytes: &[u8]) -> Result<Edition, ConfigError> {
    let cidrs = parse_for(provider, bytes)?;
    if cidrs.is_empty() {
        return Err(ConfigError::new(format!("the {provider} list holds no prefixes"))
            .hint("is this the provider's published list?"));
    }
    #[cfg(feature = "serde")]
    {
        let is_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if is_json {
            let (token, published) = json::token(bytes)?;
            return Ok(Edition { cidrs, token, published });
        }
    }
    Ok(Edition { cidrs, token: None, published: None })
}

/// Parses a provider's published list by provider name, telling JSON from text by its
/// first byte: `cloudfront` (AWS JSON, origin-facing service), `fastly` (Fastly JSON),
/// `azure-front-door` (service tags JSON), anything else one CIDR per line. A text list
/// is accepted for every provider, so a hand-kept list always works.
pub fn parse_for(provider: &str, bytes: &[u8]) -> Result<Vec<Cidr>, ConfigError> {
    let cidrs = parse_any(provider, bytes)?;
    for cidr in &cidrs {
        if let Some(why) = implausible(cidr) {
            return Err(ConfigError::new(format!(
                "the {provider} list holds {cidr}, {why}: no CDN publishes such a range"
            ))
            .hint("is this the provider's published list, from the provider? a list that trusts it would let clients there name any address"));
        }
    }
    Ok(cidrs)
}

/// Why a prefix cannot be part of a CDN's or cloud provider's published list, if it
/// cannot: wider than any provider holds (IPv4 /8, IPv6 /16: `0.0.0.0/0`, or the mapped
/// `::ffff:0:0/96` that stands for all of IPv4), or reaching into addresses that are
/// never a provider's public source (private, loopback, link-local, shared, multicast,
/// reserved; IPv6 unique-local, link-local, multicast, the `::/96` block that holds the
/// unspecified and loopback addresses, and the NAT64, Teredo and 6to4 prefixes, where
/// every IPv4 host can hold an address). A tampered mirror or a planted cache file that
/// slipped such a prefix in would trust everyone behind it.
pub fn implausible(cidr: &Cidr) -> Option<&'static str> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    const V4: [(Ipv4Addr, u8, &str); 9] = [
        (Ipv4Addr::new(0, 0, 0, 0), 8, "which reaches into 0.0.0.0/8 (this network)"),
        (Ipv4Addr::new(10, 0, 0, 0), 8, "which reaches into private 10.0.0.0/8"),
        (Ipv4Addr::new(100, 64, 0, 0), 10, "which reaches into shared 100.64.0.0/10"),
        (Ipv4Addr::new(127, 0, 0, 0), 8, "which reaches into loopback 127.0.0.0/8"),
        (Ipv4Addr::new(169, 254, 0, 0), 16, "which reaches into link-local 169.254.0.0/16"),
        (Ipv4Addr::new(172, 16, 0, 0), 12, "which reaches into private 172.16.0.0/12"),
        (Ipv4Addr::new(192, 168, 0, 0), 16, "which reaches into private 192.168.0.0/16"),
        (Ipv4Addr::new(224, 0, 0, 0), 4, "which reaches into multicast 224.0.0.0/4"),
        (Ipv4Addr::new(240, 0, 0, 0), 4, "which reaches into reserved 240.0.0.0/4"),
    ];
    const V6: [(Ipv6Addr, u8, &str); 8] = [
        (Ipv6Addr::UNSPECIFIED, 96, "which reaches into ::/96 (unspecified, loopback)"),
        // Each of these four holds an address for every IPv4 host that asks (a 6to4 or
        // Teredo tunnel, a NAT64 translator): trusting one trusts anyone on IPv4 there.
        (
            Ipv6Addr::new(0x0064, 0xff9b, 0, 0, 0, 0, 0, 0),
            96,
            "which reaches into NAT64 64:ff9b::/96 (all of IPv4, translated)",
        ),
        (
            Ipv6Addr::new(0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0),
            48,
            "which reaches into local-use NAT64 64:ff9b:1::/48",
        ),
        (
            Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
            32,
            "which reaches into Teredo 2001::/32 (any IPv4 host, tunnelled)",
        ),
        (
            Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
            16,
            "which reaches into 6to4 2002::/16 (any IPv4 host, tunnelled)",
        ),
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "which reaches into unique-local fc00::/7"),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "which reaches into link-local fe80::/10"),
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "which reaches into multicast ff00::/8"),
    ];
    let overlaps = |net: IpAddr, len: u8| {
        let other = Cidr::new(net, len).ok();
        other.is_some_and(|o| o.contains(cidr.network()) || cidr.contains(o.network()))
    };
    match cidr.network() {
        IpAddr::V4(_) if cidr.prefix() < 8 => Some("wider than a /8"),
        IpAddr::V6(_) if cidr.prefix() < 16 => Some("wider than a /16"),
        IpAddr::V4(_) => {
            V4.iter().find(|(net, len, _)| overlaps(IpAddr::V4(*net), *len)).map(|(_, _, why)| *why)
        }
        IpAddr::V6(_) => {
            V6.iter().find(|(net, len, _)| overlaps(IpAddr::V6(*net), *len)).map(|(_, _, why)| *why)
        }
    }
}

fn parse_any(provider: &str, bytes: &[u8]) -> Result<Vec<Cidr>, ConfigError> {
    let is_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !is_json {
        return cidr_lines(bytes);
    }
    #[cfg(feature = "serde")]
    {
        match provider {
            "cloudfront" => aws_ip_ranges(bytes, CLOUDFRONT_ORIGIN_FACING),
            "fastly" => fastly_public_ip_list(bytes),
            "azure-front-door" => azure_service_tags(bytes, AZURE_FRONT_DOOR_BACKEND),
            _ => Err(ConfigError::new(format!("no JSON format known for provider \"{provider}\""))
                .hint("give one CIDR per line")),
        }
    }
    #[cfg(not(feature = "serde"))]
    {
        Err(ConfigError::new(format!(
            "JSON range lists for \"{provider}\" need trueip's `serde` feature"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_prefixes_are_refused() {
        for bad in [
            "0.0.0.0/0",
            "0.0.0.0/1",
            "128.0.0.0/1",
            "8.0.0.0/7",
            "::/0",
            "8000::/1",
            "::/16",
            "::ffff:0:0/96",
            "10.1.0.0/16",
            "127.0.0.0/8",
            "192.168.1.0/24",
            "172.20.0.0/16",
            "169.254.0.0/16",
            "100.64.0.0/16",
            "224.0.0.0/8",
            "255.255.255.255/32",
            "fd00::/8",
            "fe80::/64",
            "ff02::/16",
            "::1/128",
            "64:ff9b::/96",
            "64:ff9b::a00:1/128",
            "64:ff9b:1::/48",
            "2001::/32",
            "2001:0:4136:e378::/64",
            "2002::/16",
            "2002:c000:0204::/48",
            "2000::/4",
        ] {
            let err = parse_for("cloudflare", bad.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("no CDN publishes"), "{bad}: {err}");
        }
        for good in [
            "173.245.48.0/20",
            "104.16.0.0/13",
            "13.32.0.0/15",
            "2606:4700::/32",
            "2400:cb00::/32",
            "2a06:98c0::/29",
            "2001:4860::/32",
            "2003::/19",
        ] {
            assert_eq!(parse_for("cloudflare", good.as_bytes()).unwrap().len(), 1, "{good}");
        }
    }

    #[test]
    fn cloudflare_text() {
        let list = cidr_lines(b"173.245.48.0/20\n# comment\n\n2400:cb00::/32\n").unwrap();
        assert_eq!(list.len(), 2);
        let err = cidr_lines(b"173.245.48.0/20\n10.0.0.0/33\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(cidr_lines(b"").is_err());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn aws_json() {
        let json = br#"{"syncToken":"1","createDate":"x","prefixes":[
            {"ip_prefix":"3.2.34.0/26","region":"af-south-1","service":"AMAZON","network_border_group":"af-south-1"},
            {"ip_prefix":"13.32.0.0/15","region":"GLOBAL","service":"CLOUDFRONT_ORIGIN_FACING","network_border_group":"GLOBAL"}],
            "ipv6_prefixes":[{"ipv6_prefix":"2600:9000:ddd::/48","region":"GLOBAL","service":"CLOUDFRONT_ORIGIN_FACING","network_border_group":"GLOBAL"}]}"#;
        let list = aws_ip_ranges(json, CLOUDFRONT_ORIGIN_FACING).unwrap();
        assert_eq!(
            list.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["13.32.0.0/15", "2600:9000:ddd::/48"]
        );
        assert!(aws_ip_ranges(json, "NOPE").is_err());
        assert!(aws_ip_ranges(b"{}", CLOUDFRONT_ORIGIN_FACING).is_err());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn editions_carry_the_providers_token() {
        let aws = br#"{"syncToken":"1753388594","createDate":"2025-07-24-20-23-14","prefixes":[
            {"ip_prefix":"13.32.0.0/15","service":"CLOUDFRONT_ORIGIN_FACING"}],"ipv6_prefixes":[]}"#;
        let e = edition("cloudfront", aws).unwrap();
        assert_eq!(e.token, Some(1_753_388_594));
        assert_eq!(e.published.as_deref(), Some("2025-07-24-20-23-14"));
        assert_eq!(e.counts(), (1, 0));
        let az = br#"{"changeNumber":363,"values":[{"name":"AzureFrontDoor.Backend","properties":{"addressPrefixes":["147.243.0.0/16"]}}]}"#;
        assert_eq!(edition("azure-front-door", az).unwrap().token, Some(363));
        let text = edition("cloudflare", b"173.245.48.0/20\n2400:cb00::/32").unwrap();
        assert_eq!((text.token, text.counts()), (None, (1, 1)));
        let bad = br#"{"syncToken":"soon","prefixes":[{"ip_prefix":"13.32.0.0/15","service":"CLOUDFRONT_ORIGIN_FACING"}]}"#;
        assert!(edition("cloudfront", bad).unwrap_err().to_string().contains("syncToken"));
        let empty = edition("fastly", br#"{"addresses":[],"ipv6_addresses":[]}"#).unwrap_err();
        assert!(empty.to_string().contains("no prefixes"), "{empty}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn fastly_and_azure_json() {
        let list = fastly_public_ip_list(
            br#"{"addresses":["23.235.32.0/20"],"ipv6_addresses":["2a04:4e40::/32"]}"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        let az = br#"{"values":[{"name":"AzureFrontDoor.Backend","id":"x","properties":{"addressPrefixes":["147.243.0.0/16","2a01:111:2050::/44"]}}]}"#;
        assert_eq!(azure_service_tags(az, AZURE_FRONT_DOOR_BACKEND).unwrap().len(), 2);
    }
}
