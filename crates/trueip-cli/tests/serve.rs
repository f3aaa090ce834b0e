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
    let mut child = Running(serve(&["--listen", "127.0.0.1:0"]).spawn().expect("run trueip"));
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
        assert!(!line.contains("\x1b["), "colour codes in a piped log: {line:?}");
    }
    assert!(seen.iter().any(|l| l.contains("INFO")), "{seen:#?}");
}

/// Runs `cmd` to its end (it must end by itself within 20 s); returns the exit code and stderr.
fn run_to_exit(mut cmd: Command) -> (Option<i32>, String) {
    let child = cmd.spawn().expect("run trueip");
    let (tx, rx) = mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("trueip (pid {id}) still runs after 20 s"))
        .expect("trueip output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn serve_on_a_taken_port_names_the_address_and_suggests_listen() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("local addr");
    let (code, err) = run_to_exit(serve(&["--listen", &addr.to_string()]));
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.contains("in use"), "{err}");
    assert!(err.contains("--listen 127.0.0.1:"), "suggests the flag: {err}");
    assert!(err.contains("[[listen]]"), "and the config key: {err}");
    drop(taken);
}

/// Whoami mode serves bare `/healthz` and `/metrics` beside the prefixed ones (no app
/// owns the paths), and the start-up summary names both; with an upstream, only the
/// prefixed ones. Fails on the old code, which named only `/.trueip/...`.
#[test]
fn the_summary_names_every_health_and_metrics_path_served() {
    let check = |args: &[&str]| {
        let out = serve(&[&["--check"][..], args].concat()).output().expect("run trueip");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let whoami = check(&[]);
    assert!(
        whoami.contains(
            "health /.trueip/healthz and /healthz, metrics /.trueip/metrics and /metrics on every HTTP listener"
        ),
        "{whoami}"
    );
    let upstream = check(&["--upstream", "http://127.0.0.1:3000"]);
    assert!(
        upstream
            .contains("health /.trueip/healthz, metrics /.trueip/metrics on every HTTP listener"),
        "{upstream}"
    );
    // The metrics answer only clients a stranger cannot be, and the summary says so.
    assert!(upstream.contains("the metrics only to clients a stranger cannot be"), "{upstream}");
}
