//! Tables in the documentation that restate a table in the code are rendered from the code
//! here and must appear in the documents word for word, so the two cannot drift.

use trueip::headers::names::{Claim, FORWARDING};

fn doc(path: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_security_doc_lists_every_client_ip_header_the_gateway_strips() {
    let mut table =
        String::from("| header | claims | who writes it · who reads it |\n| --- | --- | --- |\n");
    for row in &FORWARDING {
        let claim = match row.claim {
            Claim::Address => "address",
            Claim::Request => "request",
            Claim::Origin => "origin",
            Claim::Identity => "identity",
            Claim::Hops => "hops",
        };
        table.push_str(&format!("| `{}` | {claim} | {} |\n", row.as_str(), row.used_by));
    }
    let security = doc("docs/SECURITY.md");
    assert!(
        security.contains(&table),
        "docs/SECURITY.md must hold the client-IP header table exactly as \
         trueip::headers::names::FORWARDING has it:\n{table}"
    );
}
