//! Test certificates made by `openssl` in a test's folder: a CA, server certificates it
//! signs, and a second CA that signed nothing.

#![allow(dead_code, reason = "each test binary uses a part")]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::external;

/// The files of a test PKI: a CA, a server certificate it signed (for `upstream.test`,
/// `localhost` and 127.0.0.1), and a second CA that signed nothing here.
pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let bin = external("openssl", "openssl").expect("openssl is installed");
    let out = Command::new(bin).current_dir(dir).args(args).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

pub fn pki(dir: &Path) -> Option<Pki> {
    external("openssl", "openssl")?;
    ca(dir, "test-ca");
    ca(dir, "other-ca");
    let (cert, key) = leaf(dir, "leaf", "DNS:upstream.test,DNS:localhost,IP:127.0.0.1");
    Some(Pki { ca: dir.join("test-ca.pem"), other_ca: dir.join("other-ca.pem"), cert, key })
}

/// A server certificate signed by `test-ca` (made by [`pki`] in `dir`) for the
/// `sans` (`DNS:a.test`, `IP:127.0.0.1`): files `<name>.pem` and `<name>.key`.
pub fn leaf(dir: &Path, name: &str, sans: &str) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("write the extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "test-ca.pem",
            "-CAkey",
            "test-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")))
}

/// What `openssl s_client -connect addr -ign_eof <args>` prints (stdout) after sending
/// `input`: it keeps the connection after its input ends and exits when the server
/// closes it.
pub fn s_client(addr: SocketAddr, args: &[&str], input: &[u8]) -> String {
    let bin = external("openssl", "openssl").expect("openssl is installed");
    let mut client = Command::new(bin)
        .args(["s_client", "-connect", &addr.to_string(), "-ign_eof"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    if let Some(mut stdin) = client.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = client.wait_with_output().expect("s_client ends");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
