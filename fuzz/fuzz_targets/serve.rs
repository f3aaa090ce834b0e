//! `trueip serve` over loopback, fed arbitrary bytes on a fresh connection (its write side
//! then closed): on every path (the lean HTTP/1.1 reader, hyper's, a PROXY listener) the
//! gateway answers or closes without a panic and without waiting past its header
//! timeout, and every whoami answer names a client it may name: the peer when nothing is
//! trusted, the PROXY header's source when the sender is trusted for PROXY only, an
//! address written in the request when loopback is a trusted proxy.
#![no_main]

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use trueip::proxy_protocol::{Decode, decode};
use trueip_gateway::testing::{Build, Server};

/// What each server trusts, and so what its answers may name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Trusts {
    Nothing,
    Loopback,
    ProxySender,
}

const SERVERS: [(&str, bool, Trusts); 4] = [
    ("", true, Trusts::Nothing),
    ("", false, Trusts::Nothing),
    (
        "[client_ip]\ntrusted = [\"127.0.0.1\"]\nstrategy = [\"header:x-real-ip\", \"rightmost-untrusted\"]\n",
        true,
        Trusts::Loopback,
    ),
    ("[client_ip]\nproxy_protocol_from = [\"127.0.0.1\"]\n", true, Trusts::ProxySender),
];

/// The runtime the servers run on, and the servers: kept for the process's life.
struct Running {
    rt: tokio::runtime::Runtime,
    servers: Vec<(Server, SocketAddr, Trusts)>,
}

fn servers() -> &'static Running {
    static S: OnceLock<Running> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let servers = SERVERS
            .iter()
            .map(|&(client_ip, lean, trusts)| {
                let proxy = if trusts == Trusts::ProxySender { "proxy_protocol = \"any\"\n" } else { "" };
                let toml = format!(
                    "{client_ip}[[listen]]\naddress = \"127.0.0.1:0\"\n{proxy}[limits]\nheader_read_timeout = \"2s\"\nproxy_protocol_timeout = \"2s\"\n"
                );
                let build = Build::new(&toml, lean).unwrap();
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                let addr = listener.local_addr().unwrap();
                let server = rt.block_on(async {
                    Server::start(tokio::net::TcpListener::from_std(listener).unwrap(), &build).unwrap()
                });
                (server, addr, trusts)
            })
            .collect();
        Running { rt, servers }
    })
}

/// The whoami JSON answers in `bytes` (responses one after another), as their
/// `client_ip`s; stops at the first response it cannot frame.
fn clients(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let mut lines = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut lines);
        let Ok(httparse::Status::Complete(n)) = resp.parse(bytes) else { return out };
        let header = |name: &str| {
            resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
        };
        let Some(len) = header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
        else {
            return out;
        };
        let json = header("content-type").is_some_and(|v| v.starts_with(b"application/json"));
        let Some(body) = bytes.get(n..n + len) else { return out };
        if json && resp.code == Some(200) {
            let page: serde_json::Value = serde_json::from_slice(body).expect("whoami JSON parses");
            if let Some(ip) = page["client_ip"].as_str() {
                out.push(ip.to_string());
            }
        }
        bytes = &bytes[n + len..];
    }
}

/// Whether `ip` is written in `data`: as text, or as an address between separators.
fn written(data: &[u8], ip: IpAddr) -> bool {
    let text = String::from_utf8_lossy(data).to_ascii_lowercase();
    text.contains(&ip.to_string())
        || data.split(|b| b" ,;\"[]=\r\n\t".contains(b)).any(|p| {
            trueip::addr::parse_node(p).is_ok_and(|n| n.ip == ip)
                || trueip::addr::parse_ip_port_last_colon(p).is_ok_and(|n| n.ip == ip)
        })
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, data)) = input.split_first() else { return };
    let servers = &servers().servers;
    let (_, addr, trusts) = servers[usize::from(pick) % servers.len()];
    // Either the bytes as they are, or header lines between a fixed request line asking
    // for JSON and the blank line.
    let framed;
    let data = if pick & 0x80 != 0 {
        framed = [b"GET /json HTTP/1.1\r\nHost: a\r\n", data, b"\r\n\r\n"].concat();
        &framed[..]
    } else {
        data
    };
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = conn.write_all(data);
    let _ = conn.shutdown(Shutdown::Write);
    let started = Instant::now();
    let mut got = Vec::new();
    match (&mut conn).take(4 << 20).read_to_end(&mut got) {
        Ok(_) => {}
        // Closed with bytes unread: a reset.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no answer and no close after {:?}: {e}", started.elapsed()),
    }
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    for client in clients(&got) {
        let ip: IpAddr = client.parse().expect("client_ip is an address");
        let allowed = ip == loopback
            || match trusts {
                Trusts::Nothing => false,
                Trusts::Loopback => written(data, ip),
                Trusts::ProxySender => matches!(
                    decode(data),
                    Ok(Decode::Complete { header, .. })
                        if header.addrs.is_some_and(|a| a.source.ip().to_canonical() == ip)
                ),
            };
        assert!(allowed, "{trusts:?} answered {ip} to {:?}", data.escape_ascii().to_string());
    }
});
