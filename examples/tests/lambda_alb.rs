//! The `lambda-alb` program as a user runs it: an event on stdin, the ALB response on
//! stdout.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(event: &str) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lambda-alb"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run lambda-alb");
    child.stdin.take().expect("stdin").write_all(event.as_bytes()).expect("write the event");
    let out = child.wait_with_output().expect("lambda-alb output");
    assert!(out.status.success());
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    serde_json::from_str(response["body"].as_str().expect("a string body")).expect("JSON body")
}

#[test]
fn the_story_and_the_forgery_get_the_same_client() {
    let story = include_str!("../lambda-alb/event.json");
    let forged = story.replace(
        "\"x-forwarded-for\": \"203.0.113.195",
        "\"x-forwarded-for\": \"1.2.3.4, 203.0.113.195",
    );
    assert_ne!(story, forged);
    for event in [story, &forged] {
        let body = run(event);
        assert_eq!(body["client_ip"], "150.172.238.178", "{body}");
        assert_eq!(body["warnings"], serde_json::json!(["spoof_attempt"]), "{body}");
    }
}
