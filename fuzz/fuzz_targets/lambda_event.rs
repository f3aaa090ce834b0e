//! A Lambda event, as JSON: telling its kind and reading its stand-in never panics; a parsed
//! event decides as `resolve_event` does, its explanation names the same client, and an
//! error's message stays short whatever the event held.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trueip::Policy;
use trueip::lambda::{Event, Preset};

fn policies() -> &'static [Policy] {
    static P: OnceLock<Vec<Policy>> = OnceLock::new();
    P.get_or_init(|| {
        let mut out: Vec<Policy> = [Preset::Alb, Preset::ApiGateway]
            .into_iter()
            .map(|p| p.builder().build().unwrap())
            .collect();
        out.push(
            Policy::builder()
                .trust_str("10.0.0.0/8")
                .unwrap()
                .strategy_str("header:x-real-ip")
                .unwrap()
                .strategy_str("rightmost-untrusted")
                .unwrap()
                .build()
                .unwrap(),
        );
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match Event::parse(&value) {
        Ok(event) => {
            for policy in policies() {
                let resolution = event.resolve(policy);
                let again = trueip::lambda::resolve_event(policy, &value).unwrap();
                assert_eq!(resolution, again);
                let explanation = event.explain(policy);
                assert_eq!(
                    explanation.client_ip,
                    resolution.ip().map(|ip| ip.to_string()),
                    "{explanation:?}"
                );
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.len() < 2000, "{message}");
        }
    }
});
