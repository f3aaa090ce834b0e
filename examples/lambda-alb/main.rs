//! A Lambda function behind an Application Load Balancer that tells its caller who it
//! is: the handler reads the client from the ALB's event and answers with it.
//!
//! ```text
//! cargo run -p trueip-examples --bin lambda-alb                 # the story event (event.json)
//! cargo run -p trueip-examples --bin lambda-alb < my-event.json # an event your function logged
//! ```
//!
//! The story: a client behind two proxies of its own (`203.0.113.195`, then
//! `70.41.3.18`) reaches the ALB from `150.172.238.178`; the ALB appends what it saw,
//! so the function gets `x-forwarded-for: 203.0.113.195, 70.41.3.18, 150.172.238.178`.
//! Only the ALB can invoke the function and it wrote the last element, so that element
//! is the client; what stands left of it the client sent, and could have forged —
//! `1.2.3.4, 203.0.113.195, ...` gets the same answer, flagged `spoof_attempt`.
//!
//! The handler is a plain function over the event JSON, so it runs here without a Lambda
//! runtime. In a function, hand it to the runtime (crates `lambda_runtime`, `tokio`):
//!
//! ```text
//! let policy = Preset::Alb.builder().build()?;
//! lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
//!     let response = handler(&policy, &event.payload);
//!     async move { Ok::<_, lambda_runtime::Error>(response) }
//! })).await
//! ```

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use serde_json::{Value, json};
use trueip::Policy;
use trueip::lambda::{self, Preset};

/// The story's event, as the ALB delivers it.
const STORY_EVENT: &str = include_str!("event.json");

/// Answers an ALB event with the caller's address, where it came from and what looked
/// wrong, as an ALB target response.
///
/// An event without the ALB's `x-forwarded-for` entry (the load balancer's
/// `routing.http.xff_header_processing.mode` is not `append`) says nothing about the
/// caller: that is the deployment's fault, so the answer is a 500 whose body names the
/// fix, never a guessed address.
fn handler(policy: &Policy, event: &Value) -> Value {
    match lambda::resolve_event(policy, event) {
        Ok(resolution) => response(
            200,
            json!({
                "client_ip": resolution.ip().map_or_else(|| resolution.client.to_string(), |ip| ip.to_string()),
                "source": policy.describe_source(&resolution),
                "trusted_hops": resolution.trusted_hops,
                "warnings": resolution.warnings.names().collect::<Vec<_>>(),
            }),
        ),
        Err(error) => {
            eprintln!("lambda-alb: {error}");
            response(500, json!({ "error": error.to_string() }))
        }
    }
}

/// An ALB target response: the load balancer wants `statusCode`, `statusDescription`,
/// `headers` and a string `body`.
fn response(status: u16, body: Value) -> Value {
    let description = match status {
        200 => "200 OK",
        _ => "500 Internal Server Error",
    };
    json!({
        "statusCode": status,
        "statusDescription": description,
        "isBase64Encoded": false,
        "headers": { "content-type": "application/json" },
        "body": body.to_string(),
    })
}

fn main() -> ExitCode {
    let policy = match Preset::Alb.builder().build() {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("lambda-alb: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = String::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        text.push_str(STORY_EVENT);
    } else if let Err(error) = stdin.lock().read_to_string(&mut text) {
        eprintln!("lambda-alb: cannot read the event: {error}");
        return ExitCode::FAILURE;
    }
    let text = if text.trim().is_empty() { STORY_EVENT } else { &text };
    let event: Value = match serde_json::from_str(text) {
        Ok(event) => event,
        Err(error) => {
            eprintln!("lambda-alb: the event is not JSON: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", handler(&policy, &event));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(event: &Value) -> (u64, Value) {
        let policy = Preset::Alb.builder().build().unwrap();
        let response = handler(&policy, event);
        let body = response["body"].as_str().unwrap();
        (response["statusCode"].as_u64().unwrap(), serde_json::from_str(body).unwrap())
    }

    fn story() -> Value {
        serde_json::from_str(STORY_EVENT).unwrap()
    }

    #[test]
    fn the_story_event_answers_with_the_address_the_alb_saw() {
        let (status, body) = answer(&story());
        assert_eq!(status, 200);
        assert_eq!(body["client_ip"], "150.172.238.178");
        assert_eq!(body["source"], "x-forwarded-for[-1]");
        assert_eq!(body["warnings"], json!(["spoof_attempt"]));
    }

    #[test]
    fn a_forged_first_entry_changes_nothing() {
        let mut event = story();
        event["headers"]["x-forwarded-for"] =
            "1.2.3.4, 203.0.113.195, 70.41.3.18, 150.172.238.178".into();
        let (status, body) = answer(&event);
        assert_eq!(status, 200);
        assert_eq!(body["client_ip"], "150.172.238.178");
        assert_eq!(body["warnings"], json!(["spoof_attempt"]));
    }

    #[test]
    fn an_event_without_the_albs_entry_is_a_500_naming_the_fix() {
        let mut event = story();
        event["headers"].as_object_mut().unwrap().remove("x-forwarded-for");
        let (status, body) = answer(&event);
        assert_eq!(status, 500);
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("xff_header_processing"), "{error}");
    }
}
