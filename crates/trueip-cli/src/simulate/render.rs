//! Text and JSON output of a simulation.

use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use super::Simulation;
use super::model::{Request, Value};

/// A header value with forged parts in «guillemets».
pub(crate) fn marked(value: &Value) -> String {
    value
        .0
        .iter()
        .map(|p| if p.forged { format!("«{}»", p.text) } else { p.text.clone() })
        .collect()
}

/// The name of receiver `i` (0-based; the last is the app).
pub(crate) fn receiver_name(sim: &Simulation, i: usize) -> String {
    match sim.topology.hops.get(i) {
        Some(h) => format!("{}. {}", i + 1, h.label),
        None => "app".to_string(),
    }
}

/// Where receiver `i` sits.
pub(crate) fn receiver_address(sim: &Simulation, i: usize) -> String {
    match sim.topology.hops.get(i) {
        Some(h) => format!("{} (trusted as {})", h.address, h.range),
        None => format!("{}:{}", sim.topology.app_address, sim.topology.app_port),
    }
}

fn verdict(right: bool, forged: bool, survives: bool) -> &'static str {
    match (right, forged, survives) {
        (true, _, true) => "right",
        (true, _, false) => "right here, but a forged header changes it",
        (false, true, _) => "WRONG: the client's own text",
        (false, false, _) => "WRONG",
    }
}

/// The text form; `run_inner` gives it in terminal mode, as every value in it may be
/// what the topology wrote.
pub(crate) fn text(sim: &Simulation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Chain: {}", trueip::shown::terminal(&sim.source));
    let _ = writeln!(out, "(«…» marks text the client forged)\n");
    for (i, r) in sim.run.received.iter().enumerate() {
        let _ = writeln!(out, "{}  {}", receiver_name(sim, i), receiver_address(sim, i));
        request_text(&mut out, &r.request);
        if let Some(v) = &r.client_view {
            let _ = writeln!(
                out,
                "   takes as client  {}{}",
                v.text,
                if v.forged { "  (forged)" } else { "" }
            );
        }
        for n in &r.notes {
            let _ = writeln!(out, "   note             {n}");
        }
        out.push('\n');
    }
    let a = &sim.at_app;
    let _ = writeln!(out, "At the app, a right answer is {}:", a.expected);
    let _ = writeln!(
        out,
        "   (nginx realip: set_real_ip_from the ranges of the policy below, real_ip_header X-Forwarded-For)"
    );
    let width = a
        .approaches
        .iter()
        .map(|x| x.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(a.recommended.strategy.len() + 9);
    for x in &a.approaches {
        let _ = writeln!(
            out,
            "   {:width$}  {:16}  {}",
            x.name,
            x.answer.as_deref().unwrap_or("(nothing)"),
            verdict(x.right, x.forged, x.survives_forgery),
        );
    }
    let r = &a.recommended;
    let _ = writeln!(
        out,
        "   {:width$}  {:16}  {}",
        format!("trueip ({})", r.strategy),
        r.explanation.client_ip.as_deref().unwrap_or("unix:"),
        if r.right { "right, forged headers cannot change it" } else { "see below" }
    );
    if !r.explanation.warnings.is_empty() {
        let _ = writeln!(out, "   trueip warnings: {}", r.explanation.warnings.join(", "));
    }
    if let Some(p) = &r.problem {
        let _ = writeln!(out, "   problem: {p}");
    }
    out.push_str("\nConfiguration\n");
    for s in &sim.config {
        let _ = writeln!(out, "\n## {} ({})", s.layer, s.kind);
        let _ = writeln!(out, "{}", s.text.trim_end());
    }
    out
}

fn request_text(out: &mut String, r: &Request) {
    let _ = writeln!(out, "   peer             {}", r.peer);
    if let Some(p) = &r.proxy {
        let _ = writeln!(
            out,
            "   PROXY v{}         {} -> {}{}",
            p.version,
            p.source,
            p.destination,
            if p.forged { "  (forged source)" } else { "" }
        );
    }
    if let Some(q) = &r.query {
        let _ = writeln!(out, "   query            ?{}", marked(q));
    }
    for (i, l) in r.headers.iter().enumerate() {
        let _ = writeln!(
            out,
            "   {:16} {}: {}",
            if i == 0 { "headers" } else { "" },
            l.name,
            marked(&l.value)
        );
    }
}

fn request_json(r: &Request) -> Json {
    json!({
        "peer": r.peer.to_string(),
        "proxy": r.proxy.as_ref().map(|p| json!({
            "version": p.version,
            "source": p.source.to_string(),
            "destination": p.destination.to_string(),
            "forged": p.forged,
        })),
        "query": r.query.as_ref().map(Value::text),
        "headers": r.headers.iter().map(|l| json!({
            "name": l.name,
            "value": l.value.text(),
            "forged": l.value.0.iter().filter(|p| p.forged).map(|p| p.text.clone()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn json(sim: &Simulation) -> Result<String, String> {
    let hops: Vec<Json> = sim
        .run
        .received
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let hop = sim.topology.hops.get(i);
            json!({
                "position": i + 1,
                "name": hop.map_or("app", |h| h.kind.name()),
                "label": hop.map_or("app", |h| h.label.as_str()),
                "address": hop.map_or(sim.topology.app_address, |h| h.address).to_string(),
                "trusted_as": hop.map(|h| h.range.to_string()),
                "receives": request_json(&r.request),
                "takes_as_client": r.client_view.as_ref().map(|v| json!({"address": v.text, "forged": v.forged})),
                "notes": r.notes,
            })
        })
        .collect();
    let doc = json!({
        "chain": sim.source,
        "hops": hops,
        "at_app": sim.at_app,
        "config": sim.config,
    });
    trueip::shown::terminal_json_pretty(&doc).map_err(|e| e.to_string())
}
