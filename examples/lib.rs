//! trueip's deployment stories, one runnable program each (see the `[[bin]]` targets):
//!
//! | story | program | run it |
//! | --- | --- | --- |
//! | a Lambda function behind an ALB | `lambda_alb/main.rs` | `cargo run -p trueip-examples --bin lambda-alb < event.json` |
