//! `trueip serve` as a newcomer starts it: logs that read well in a file, and a start-up
//! failure that says what to do.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const TRUEIP: &str = env!("CARGO_BIN_EXE_trueip");

/// `trueip serve ARGS` with stdout and stderr piped (not a terminal), and without the
/// variables that would change what it logs.
fn serve(args: &[&str]) -> Command {
    let mut cmd = Command::new(TRUEIP);
    cmd.arg("serve")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Kills (by its own id) and reaps the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_logs_to_a_pipe_without_colour_codes() {
    let mut child = Running(
        serve(&["--listen", "127.0.0.1:0"])
            .spawn()
            .expect("run trueip"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(line)) => {
                let listening = line.contains("listening on");
                seen.push(line);
                if listening {
                    break;
                }
            }
            other => panic!("no \"listening on\" line ({other:?}); stderr so far: {seen:#?}"),
        }
    }
    for line in &seen {
        assert!(
            !line.contains("\x1b["),
            "colour codes in a piped log: {line:?}"
        );
    }
    assert!(seen.iter().any(|l| l.contains("INFO")), "{seen:#?}");
}
