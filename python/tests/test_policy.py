"""The Policy API: construction, errors, every shape of headers, and agreement with the CLI."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
from pathlib import Path

import pytest

import trueip

REPO = Path(__file__).resolve().parents[2]
CHAIN = "203.0.113.195, 70.41.3.18, 10.0.0.7"


@pytest.fixture
def policy() -> trueip.Policy:
    return trueip.Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted")


def test_default_policy_trusts_no_one() -> None:
    r = trueip.Policy().resolve("198.51.100.4", {"X-Forwarded-For": "1.2.3.4"})
    assert r.ip == ipaddress.ip_address("198.51.100.4")
    assert r.source == "peer"
    assert r.trusted_hops == 0
    assert not r.trusted_hop
    assert r.warnings == frozenset({"header_from_untrusted_peer"})


def test_rightmost_untrusted_walks_past_trusted_hops(policy: trueip.Policy) -> None:
    r = policy.resolve("10.0.0.5", {"X-Forwarded-For": "1.2.3.4, " + CHAIN})
    assert r.ip_str == "70.41.3.18"
    assert isinstance(r.ip, ipaddress.IPv4Address)
    assert r.port is None
    assert r.source == "x-forwarded-for[-2]"
    assert r.trusted_hops == 2
    assert r.trusted_hop
    assert r.strategy == "rightmost-untrusted"
    assert r.peer == ipaddress.ip_address("10.0.0.5")
    assert r.warnings == frozenset({"spoof_attempt"})
    assert r.spoof_attempt


def test_ipv6_client_port_and_rate_limit_key() -> None:
    p = trueip.Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted", from_="forwarded")
    r = p.resolve("10.1.2.3", {"Forwarded": 'for="[2001:db8:cafe::17]:4711"'})
    assert r.ip == ipaddress.IPv6Address("2001:db8:cafe::17")
    assert r.port == 4711
    assert r.source == "forwarded[-1]"
    assert r.rate_limit_key == "2001:db8:cafe::"
    assert trueip.Policy(ipv6_prefix=48).resolve("2001:db8:cafe:1::9").rate_limit_key == "2001:db8:cafe::"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": CHAIN},
        {"x-forwarded-for": CHAIN.encode()},
        {"X-FORWARDED-FOR": [CHAIN]},
        [("X-Forwarded-For", CHAIN)],
        [(b"x-forwarded-for", CHAIN.encode()), (b"host", b"example.com")],
        (("x-forwarded-for", CHAIN),),
        {"REQUEST_METHOD": "GET", "wsgi.version": (1, 0), "HTTP_X_FORWARDED_FOR": CHAIN, "HTTP_HOST": "example.com"},
    ],
    ids=["dict", "bytes-value", "list-value", "pairs", "asgi", "tuple", "environ"],
)
def test_every_shape_of_headers(policy: trueip.Policy, headers: object) -> None:
    r = policy.resolve("10.0.0.5", headers)
    assert (r.ip_str, r.source) == ("70.41.3.18", "x-forwarded-for[-2]")


def test_several_lines_of_one_header_are_one_list(policy: trueip.Policy) -> None:
    pairs = [("X-Forwarded-For", "203.0.113.195"), ("X-Forwarded-For", "70.41.3.18, 10.0.0.7")]
    assert policy.resolve("10.0.0.5", pairs).ip_str == "70.41.3.18"


def test_a_line_that_is_not_utf8_is_read_not_dropped() -> None:
    """aiohttp decodes header bytes that are not UTF-8 with ``surrogateescape``.
    A client that puts one such byte in its X-Forwarded-For, which nginx appends the
    client to on the same line, must not make the line vanish: the answer was nginx."""
    nginx = trueip.Policy(trust=["10.0.0.1"], strategy="rightmost-untrusted")
    sent = b"6.6.6.6\xff, 203.0.113.7"
    as_aiohttp = {"X-Forwarded-For": sent.decode("utf-8", "surrogateescape")}
    gateway = nginx.resolve("10.0.0.1", [(b"x-forwarded-for", sent)])
    assert gateway.ip_str == "203.0.113.7"
    r = nginx.resolve("10.0.0.1", as_aiohttp)
    assert (r.ip_str, r.source, r.warnings) == (gateway.ip_str, gateway.source, gateway.warnings)
    # A lone surrogate no decoder makes is no address either, and the line still counts.
    r = nginx.resolve("10.0.0.1", [("X-Forwarded-For", "\ud800, 203.0.113.7")])
    assert (r.ip_str, r.source) == ("203.0.113.7", "x-forwarded-for[-1]")


def test_framework_header_objects(policy: trueip.Policy) -> None:
    from starlette.datastructures import Headers as StarletteHeaders
    from werkzeug.datastructures import EnvironHeaders, Headers

    werkzeug_headers = Headers([("X-Forwarded-For", "203.0.113.195"), ("X-Forwarded-For", "70.41.3.18")])
    assert policy.resolve("10.0.0.5", werkzeug_headers).ip_str == "70.41.3.18"
    environ_headers = EnvironHeaders({"REQUEST_METHOD": "GET", "HTTP_X_FORWARDED_FOR": CHAIN})
    # Django's META under its ASGI handler has no wsgi.version: say so.
    assert policy.resolve("10.0.0.5", {"REQUEST_METHOD": "GET", "HTTP_X_FORWARDED_FOR": CHAIN}, environ=True).ip_str == "70.41.3.18"
    assert policy.resolve("10.0.0.5", environ_headers).ip_str == "70.41.3.18"
    starlette = StarletteHeaders(raw=[(b"x-forwarded-for", b"203.0.113.195"), (b"x-forwarded-for", b"70.41.3.18")])
    assert policy.resolve("10.0.0.5", starlette).ip_str == "70.41.3.18"


@pytest.mark.parametrize(
    "peer",
    ["10.0.0.5", "10.0.0.5:41000", ipaddress.ip_address("10.0.0.5"), ("10.0.0.5", 41000), "::ffff:10.0.0.5"],
)
def test_peer_shapes(policy: trueip.Policy, peer: object) -> None:
    r = policy.resolve(peer, {"X-Forwarded-For": "198.51.100.1"})
    assert (r.ip_str, r.trusted_hops) == ("198.51.100.1", 1)


@pytest.mark.parametrize("peer", ["10.0.0.256", "0.0.0.0", ("10.0.0.5",), 5, "unix"])
def test_a_peer_that_is_not_an_address_is_a_value_error(policy: trueip.Policy, peer: object) -> None:
    with pytest.raises((ValueError, TypeError)) as e:
        policy.resolve(peer, {})
    assert "peer" in str(e.value) or isinstance(e.value, TypeError)


def test_headers_of_no_known_shape_are_a_type_error(policy: trueip.Policy) -> None:
    with pytest.raises(TypeError, match="headers must be"):
        policy.resolve("10.0.0.5", 42)


def test_bad_headers_never_raise(policy: trueip.Policy) -> None:
    """Whatever a client writes (and whatever junk sits in a mapping), resolve answers."""
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(32, 127)] + ["\u00e9", "\u2603", "\x00", "\ud800"]
    values: list[object] = ["", ",,,", '"', "for=", "unknown", "[::1", "1.2.3.4:99999", "x" * 70_000, b"\xff\xfe"]
    for _ in range(3000):
        value: object = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.2:
            value = rng.choice(values)
        name = rng.choice(["X-Forwarded-For", "Forwarded", "X-Real-IP", "x_forwarded_for", 3, None, b"\xff"])
        for headers in ({name: value} if isinstance(name, (str, bytes)) else {}, [(name, value)], [(name,)], [name]):
            r = policy.resolve("10.0.0.5", headers)
            assert isinstance(r.ip, (ipaddress.IPv4Address, ipaddress.IPv6Address))
            assert r.warnings <= set(trueip.warning_names())


def test_policy_errors_carry_the_cli_message() -> None:
    with pytest.raises(trueip.PolicyError, match=r'unknown strategy "nope".*hint: use peer, rightmost-untrusted'):
        trueip.Policy(strategy="nope")
    with pytest.raises(trueip.PolicyError, match="trusted"):
        trueip.Policy(trust=["10.0.0.0/33"])
    with pytest.raises(trueip.PolicyError, match="from"):
        trueip.Policy(from_="x-real-ip")
    with pytest.raises(trueip.PolicyError, match="cloudfront"):
        trueip.Policy(strategy="cloudfront")
    with pytest.raises(trueip.PolicyError, match="unknown provider"):
        trueip.Policy(providers={"akamai": "ranges.txt"})
    with pytest.raises(trueip.PolicyError, match="cannot read"):
        trueip.Policy(providers={"cloudflare": "/nonexistent/ips-v4"})
    with pytest.raises(TypeError):
        trueip.Policy(strategy=3)
    assert issubclass(trueip.PolicyError, ValueError)


def test_providers_and_origin_secret(tmp_path: Path) -> None:
    ranges = tmp_path / "ips-v4"
    ranges.write_text("173.245.48.0/20\n103.21.244.0/22\n")
    p = trueip.Policy(
        trust=["10.0.0.0/8"],
        strategy=["cloudflare", "rightmost-untrusted"],
        providers={"cloudflare": [ranges]},
        origin_secret=("X-Origin-Verify", "s3cret"),
    )
    headers = {"CF-Connecting-IP": "198.51.100.9", "X-Forwarded-For": "198.51.100.9", "X-Origin-Verify": "s3cret"}
    r = p.resolve("173.245.48.10", headers)
    assert (r.ip_str, r.source) == ("198.51.100.9", "cf-connecting-ip")
    # Without the secret, the same request is worth nothing.
    wrong = dict(headers, **{"X-Origin-Verify": "guess"})
    r = p.resolve("173.245.48.10", wrong)
    assert (r.ip_str, r.trusted_hop) == ("173.245.48.10", False)
    assert r.warnings == frozenset({"origin_secret_mismatch"})


def test_from_toml_reads_the_client_ip_section(tmp_path: Path) -> None:
    (tmp_path / "ranges").mkdir()
    (tmp_path / "ranges" / "ips-v4").write_text("173.245.48.0/20\n")
    config = tmp_path / "trueip.toml"
    config.write_text(
        """
[[listen]]
address = "127.0.0.1:8080"

[client_ip]
trusted = ["10.0.0.0/8"]
strategy = ["cloudflare", "rightmost-untrusted"]

[client_ip.providers]
cloudflare = "ranges/ips-v4"
"""
    )
    p = trueip.Policy.from_toml(config)
    assert p.resolve("173.245.48.1", {"CF-Connecting-IP": "198.51.100.7"}).ip_str == "198.51.100.7"
    assert p.resolve("10.0.0.1", {"X-Forwarded-For": "198.51.100.8"}).ip_str == "198.51.100.8"
    # A file without [client_ip] is the safe default, as for `trueip serve`.
    empty = tmp_path / "empty.toml"
    empty.write_text("[[listen]]\naddress = \"127.0.0.1:8080\"\n")
    r = trueip.Policy.from_toml(empty).resolve("10.0.0.1", {"X-Forwarded-For": "198.51.100.8"})
    assert (r.ip_str, r.source) == ("10.0.0.1", "peer")


def test_a_policy_error_shows_a_range_files_line_in_terminal_mode(tmp_path: Path) -> None:
    # A range file a cron job downloads, quoted in the error: an app's log showed its CR, ESC,
    # U+2028 and U+202E as they were on the code before (a line of the file's choosing).
    ranges = tmp_path / "cf.txt"
    ranges.write_text("173.245.48.0/20\n10.0.0.1\r2026 forged\x1b[2J\u2028x\u202ey\n", newline="")
    with pytest.raises(trueip.PolicyError) as caught:
        trueip.Policy(trust=["cloudflare"], providers={"cloudflare": str(ranges)})
    message = str(caught.value)
    assert r"10.0.0.1\u{d}2026 forged\u{1b}[2J\u{2028}x\u{202e}y" in message, message
    assert not any(c in message for c in "\r\n\x1b\u2028\u202e"), message


def test_from_toml_errors(tmp_path: Path) -> None:
    with pytest.raises(trueip.PolicyError, match="cannot read"):
        trueip.Policy.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[client_ip]\ntrusted = [\n")
    with pytest.raises(trueip.PolicyError, match="bad.toml"):
        trueip.Policy.from_toml(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[client_ip]\ntrusted = ["10.0.0.0/8"]\nstrategies = "hops:1"\n')
    with pytest.raises(trueip.PolicyError, match="strategies"):
        trueip.Policy.from_toml(unknown)


def test_a_provider_file_is_read_bounded(tmp_path: Path) -> None:
    """A provider path naming ``/dev/zero`` or a device was read until memory ran out: a
    list larger than any provider's is refused before its end (a sparse file here, of
    zeros, which the old read took whole and then failed to parse)."""
    huge = tmp_path / "ips-v4"
    with open(huge, "wb") as f:
        f.truncate((32 << 20) + 1)
    config = tmp_path / "trueip.toml"
    config.write_text(f'[client_ip]\ntrusted = ["cloudflare"]\n[client_ip.providers]\ncloudflare = "{huge}"\n')
    for make in (
        lambda: trueip.Policy.from_toml(config),
        lambda: trueip.Policy(trust=["cloudflare"], providers={"cloudflare": huge}),
        lambda: trueip.Policy.lambda_preset("cloudfront-alb", providers={"cloudfront": huge}),
    ):
        with pytest.raises(trueip.PolicyError, match="larger than 33554432 bytes"):
            make()


def test_the_shipped_example_config_loads() -> None:
    p = trueip.Policy.from_toml(REPO / "trueip.example.toml")
    assert p.resolve("192.0.2.1").ip_str == "192.0.2.1"


def test_header_names_are_what_the_policy_reads() -> None:
    p = trueip.Policy(trust=["10.0.0.0/8"], strategy=["header:X-Client-IP", "rightmost-untrusted"])
    assert p.header_names == ["x-forwarded-for", "forwarded", "x-real-ip", "x-client-ip"]


def test_to_dict_matches_explain(policy: trueip.Policy) -> None:
    headers = {"X-Forwarded-For": "1.2.3.4, " + CHAIN}
    d = policy.resolve("10.0.0.5", headers).to_dict()
    e = policy.explain("10.0.0.5", headers)
    for key, value in d.items():
        assert e[key] == value, key
    assert e["chain"] == ["1.2.3.4", "203.0.113.195", "70.41.3.18", "10.0.0.7"]
    assert [s["verdict"] for s in e["steps"]][0] == "start"


def _cli() -> Path | None:
    for build in ("debug", "release"):
        path = REPO / "target" / build / "trueip"
        if path.exists():
            return path
    return None


def test_explain_is_the_cli_json_byte_for_byte(policy: trueip.Policy) -> None:
    if _cli() is None:
        if os.environ.get("TRUEIP_SKIP_EXTERNAL") == "1":
            pytest.skip("the trueip binary is not built")
        pytest.fail("the trueip binary is not built: cargo build -p trueip-cli (scripts/test does)")
    cases = [
        ("10.0.0.5", [("X-Forwarded-For", "1.2.3.4, " + CHAIN)]),
        ("198.51.100.2", [("X-Forwarded-For", "1.2.3.4"), ("X-Real-IP", "5.6.7.8")]),
        ("10.0.0.5", [("Forwarded", 'for="[2001:db8::1]:80", for=10.0.0.9')]),
        ("10.0.0.5", [("X-Forwarded-For", "010.1.1.1, 10.0.0.3")]),
    ]
    for peer, headers in cases:
        args = [str(_cli()), "explain", "--trust", "10.0.0.0/8", "--strategy", "rightmost-untrusted", "--peer", peer, "--format", "json"]
        for name, value in headers:
            args += ["--header", f"{name}: {value}"]
        out = subprocess.run(args, capture_output=True, text=True, check=True, env=dict(os.environ, NO_COLOR="1")).stdout
        assert policy.explain(peer, headers) == json.loads(out)


def test_warning_and_header_tables() -> None:
    names = trueip.warning_names()
    assert "spoof_attempt" in names and len(names) == len(set(names))
    forwarding = trueip.forwarding_header_names()
    assert {"x-forwarded-for", "forwarded", "x-real-ip", "true-client-ip", "cf-connecting-ip", "http-x-real-ip"} <= set(forwarding)
    assert len(forwarding) == len(set(forwarding))


def test_resolution_is_hashable_and_comparable(policy: trueip.Policy) -> None:
    a = policy.resolve("10.0.0.5", {"X-Forwarded-For": "198.51.100.1"})
    b = policy.resolve("10.0.0.5", [("x-forwarded-for", "198.51.100.1")])
    assert a == b and hash(a) == hash(b)
    assert "198.51.100.1" in repr(a)
    assert "rightmost-untrusted" in repr(policy)


def test_query_and_cookie_sources() -> None:
    """`query:NAME` reads the `query` argument (or an environ's QUERY_STRING); `cookie:NAME`
    reads every Cookie line, HTTP/2's split ones as one list."""
    policy = trueip.Policy(trust=["10.0.0.0/8"], strategy=["query:client", "cookie:ip"])
    assert "cookie" in policy.header_names
    got = policy.resolve("10.0.0.5", [], query="a=1&client=%5B2001%3Adb8%3A%3A4%5D%3A443")
    assert (got.ip_str, got.source) == ("2001:db8::4", "query:client")
    got = policy.resolve("10.0.0.5", [], query=b"client=198.51.100.4")
    assert got.ip_str == "198.51.100.4"
    # Without a query there is nothing to read; from a stranger it is not believed.
    assert policy.resolve("10.0.0.5", []).ip_str == "10.0.0.5"
    assert policy.resolve("203.0.113.9", [], query="client=1.2.3.4").ip_str == "203.0.113.9"
    # Two of the name: ambiguous.
    got = policy.resolve("10.0.0.5", [], query="client=1.2.3.4&cl%69ent=198.51.100.4")
    assert got.ip_str == "10.0.0.5" and "duplicate_header" in got.warnings
    environ = {"wsgi.version": (1, 0), "QUERY_STRING": "client=198.51.100.7", "HTTP_COOKIE": "ip=6.6.6.6"}
    assert policy.resolve("10.0.0.5", environ).ip_str == "198.51.100.7"
    got = policy.resolve("10.0.0.5", [(b"cookie", b"s=1"), (b"cookie", b"ip=198.51.100.8")])
    assert (got.ip_str, got.source) == ("198.51.100.8", "cookie:ip")
    steps = policy.explain("10.0.0.5", [], query="client=198.51.100.4")["steps"]
    assert any(s["subject"] == "query:client" and s["verdict"] == "client" for s in steps)
    with pytest.raises(TypeError):
        policy.resolve("10.0.0.5", [], query=12)


@pytest.mark.parametrize("peer", ["", "unix:", "unix:/run/gunicorn.sock"])
def test_a_unix_socket_peer_is_trusted_only_by_unix(peer: str) -> None:
    """gunicorn on a socket gives REMOTE_ADDR "", nginx writes `unix:`: a peer with no
    address, whose headers count only under trust=["unix"]."""
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    r = trueip.Policy(trust=["unix"]).resolve(peer, headers)
    assert (r.ip_str, r.peer, r.trusted_hops, r.trusted_hop) == ("203.0.113.9", None, 1, True)
    for trust in (["any"], ["loopback"], None):
        r = trueip.Policy(trust=trust).resolve(peer, headers)
        assert (r.ip, r.ip_str, r.peer, r.rate_limit_key, r.trusted_hop) == (None, None, None, None, False), trust
        assert r.to_dict()["client_ip"] is None
        assert "header_from_untrusted_peer" in r.warnings
        assert "unix:" in repr(r)


def test_host_names_are_resolved_when_the_policy_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TRUEIP_HOSTS_FILE points the lookup at a file the test writes: no network.
    hosts = tmp_path / "hosts"
    hosts.write_text("10.0.0.5 lb.internal\n10.0.0.6 lb.internal\n172.18.0.3 nginx\n")
    monkeypatch.setenv("TRUEIP_HOSTS_FILE", str(hosts))
    p = trueip.Policy(trust=["lb.internal", "host:nginx"], strategy="rightmost-untrusted")
    assert p.trust_names == {"lb.internal": ["10.0.0.5", "10.0.0.6"], "nginx": ["172.18.0.3"]}
    for peer in ("10.0.0.6", "172.18.0.3"):
        assert str(p.resolve(peer, {"X-Forwarded-For": "198.51.100.8"}).ip) == "198.51.100.8"
    # An address the name does not resolve to is not trusted.
    assert str(p.resolve("10.0.0.7", {"X-Forwarded-For": "198.51.100.8"}).ip) == "10.0.0.7"
    # The config file's names too.
    config = tmp_path / "trueip.toml"
    config.write_text('[client_ip]\ntrusted = ["lb.internal"]\n')
    assert trueip.Policy.from_toml(config).trust_names == {"lb.internal": ["10.0.0.5", "10.0.0.6"]}
    # A name that does not resolve is an error when the policy is made.
    with pytest.raises(trueip.PolicyError, match="nope.internal"):
        trueip.Policy(trust=["nope.internal"])
    assert trueip.Policy(trust=["10.0.0.0/8"]).trust_names == {}
