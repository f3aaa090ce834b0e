//! Pictures of the chain: a self-contained SVG (each hop's peer, PROXY header and headers,
//! the forged parts in red) and Mermaid for docs.

use std::fmt::Write as _;

use trueip::shown::markup;

use super::Simulation;
use super::render::{receiver_address, receiver_name};

const FORGED: &str = "#c0392b";
const LINE: u32 = 16;
const CHAR: f64 = 7.3;
const CHAR_BOLD: f64 = 7.9;
const PAD: u32 = 10;
const GAP: u32 = 34;
const WIDTH_MIN: u32 = 420;
/// The longest text line drawn; longer ones are cut (with an ellipsis).
const MAX_CHARS: usize = 160;

/// One drawn line: pieces of text, each forged or not.
type Row = Vec<(String, bool)>;

fn plain(text: impl Into<String>) -> Row {
    vec![(text.into(), false)]
}

/// Cuts a row to [`MAX_CHARS`] characters.
fn cut(row: Row) -> Row {
    let mut left = MAX_CHARS;
    let mut out = Vec::new();
    for (text, forged) in row {
        let n = text.chars().count();
        if n <= left {
            left -= n;
            out.push((text, forged));
        } else {
            let kept: String = text.chars().take(left.saturating_sub(1)).collect();
            out.push((format!("{kept}…"), forged));
            break;
        }
    }
    out
}

fn boxes(sim: &Simulation) -> Vec<(String, Vec<Row>, bool)> {
    let mut out = Vec::new();
    let c = &sim.topology.client;
    let mut rows = vec![plain(format!("sends from {}:{}", c.address, c.port))];
    for (n, v) in &c.forges {
        rows.push(vec![(format!("{n}: "), false), (v.clone(), true)]);
    }
    if let Some(q) = &c.query {
        rows.push(vec![("query ?".to_string(), false), (q.clone(), true)]);
    }
    out.push((format!("client {}", c.address), rows, false));
    for (i, r) in sim.run.received.iter().enumerate() {
        let req = &r.request;
        let mut rows = vec![plain(format!("peer {}", req.peer))];
        if let Some(p) = &req.proxy {
            rows.push(vec![
                (format!("PROXY v{} source ", p.version), false),
                (p.source.to_string(), p.forged),
            ]);
        }
        for l in &req.headers {
            let mut row = vec![(format!("{}: ", l.name), false)];
            row.extend(l.value.0.iter().map(|p| (p.text.clone(), p.forged)));
            rows.push(row);
        }
        let forged_view = r.client_view.as_ref().is_some_and(|v| v.forged);
        if let Some(v) = &r.client_view {
            rows.push(vec![("takes as client: ".to_string(), false), (v.text.clone(), v.forged)]);
        }
        out.push((
            format!("{}  {}", receiver_name(sim, i), receiver_address(sim, i)),
            rows,
            forged_view,
        ));
    }
    let a = &sim.at_app;
    let r = &a.recommended;
    let mut rows = vec![plain(format!("a right answer: {}", a.expected))];
    for x in &a.approaches {
        rows.push(vec![
            (format!("{}: ", x.name), false),
            (x.answer.clone().unwrap_or_else(|| "(nothing)".into()), x.forged),
            (
                if x.right && x.survives_forgery {
                    "  ✓".to_string()
                } else {
                    "  ✗".to_string()
                },
                false,
            ),
        ]);
    }
    rows.push(plain(format!(
        "trueip ({}): {}{}",
        r.strategy,
        r.explanation.client_ip.as_deref().unwrap_or("unix:"),
        if r.right { "  ✓" } else { "  ✗" }
    )));
    out.push(("what the app can believe".to_string(), rows, false));
    out
}

/// The SVG document.
pub(crate) fn svg(sim: &Simulation) -> String {
    let boxes: Vec<(String, Vec<Row>, bool)> = boxes(sim)
        .into_iter()
        .map(|(t, rows, f)| (t, rows.into_iter().map(cut).collect(), f))
        .collect();
    // Bold titles run wider than the monospace rows.
    let title_px = boxes
        .iter()
        .map(|(title, _, _)| title.chars().count() as f64 * CHAR_BOLD)
        .fold(0.0, f64::max);
    let row_px = boxes
        .iter()
        .flat_map(|(_, rows, _)| {
            rows.iter().map(|r| {
                (r.iter().map(|(t, _)| t.chars().count()).sum::<usize>() + 2) as f64 * CHAR
            })
        })
        .fold(0.0, f64::max);
    let width = ((title_px.max(row_px)) as u32 + 3 * PAD).max(WIDTH_MIN);
    let mut body = String::new();
    let mut y = PAD;
    let count = boxes.len();
    for (i, (title, rows, forged)) in boxes.iter().enumerate() {
        let h = (rows.len() as u32 + 1) * LINE + 2 * PAD;
        let stroke = if *forged { FORGED } else { "#34495e" };
        let _ = writeln!(
            body,
            r##"<rect x="{PAD}" y="{y}" width="{}" height="{h}" rx="6" fill="#f8f9fa" stroke="{stroke}" stroke-width="1.5"/>"##,
            width - 2 * PAD
        );
        let mut ty = y + PAD + LINE - 3;
        let _ = writeln!(
            body,
            r#"<text x="{}" y="{ty}" font-weight="bold">{}</text>"#,
            2 * PAD,
            markup(title)
        );
        for row in rows {
            ty += LINE;
            let _ = write!(body, r#"<text x="{}" y="{ty}">"#, 3 * PAD);
            for (text, forged) in row {
                if *forged {
                    let _ = write!(
                        body,
                        r#"<tspan class="forged" fill="{FORGED}" font-weight="bold">{}</tspan>"#,
                        markup(text)
                    );
                } else {
                    let _ = write!(body, "<tspan>{}</tspan>", markup(text));
                }
            }
            body.push_str("</text>\n");
        }
        y += h;
        if i + 1 < count {
            let x = width / 2;
            let _ = writeln!(
                body,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#34495e" stroke-width="2" marker-end="url(#arrow)"/>"##,
                y + 2,
                y + GAP - 4
            );
            y += GAP;
        }
    }
    let height = y + PAD + LINE;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">"#
    );
    let _ = writeln!(out, "<title>{}</title>", markup(&sim.source));
    out.push_str(
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#34495e"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
"##,
    );
    out.push_str(&body);
    let _ = writeln!(
        out,
        r#"<text x="{PAD}" y="{}" fill="{FORGED}">red: text the client forged</text>"#,
        height - 6
    );
    out.push_str("</svg>\n");
    out
}

/// Escapes text for a Mermaid label in double quotes, in terminal mode
/// (`trueip::shown::terminal`) first: the chart is read as text too.
fn mermaid_escape(text: &str) -> String {
    trueip::shown::terminal(text)
        .to_string()
        .replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// A Mermaid flowchart: one node per hop, each edge labelled with what the next one
/// receives; forged parts in «», nodes that take a forged client in red.
pub(crate) fn mermaid(sim: &Simulation) -> String {
    let mut out = String::from("flowchart TD\n");
    let c = &sim.topology.client;
    let _ = writeln!(out, "    n0[\"client<br/>{}\"]", mermaid_escape(&c.address.to_string()));
    let mut forged_nodes = Vec::new();
    for (i, r) in sim.run.received.iter().enumerate() {
        let id = i + 1;
        // Each part escaped on its own, the line break between them left as markup.
        let title = match sim.topology.hops.get(i) {
            Some(h) => format!(
                "{}. {}<br/>{}",
                id,
                mermaid_escape(&h.label),
                mermaid_escape(&h.address.to_string())
            ),
            None => format!("app<br/>{}", mermaid_escape(&sim.topology.app_address.to_string())),
        };
        let _ = writeln!(out, "    n{id}[\"{title}\"]");
        let req = &r.request;
        let mut label = vec![format!("peer {}", req.peer)];
        if let Some(p) = &req.proxy {
            label.push(format!("PROXY v{} {}", p.version, p.source));
        }
        for l in req.headers.iter().filter(|l| !l.name.eq_ignore_ascii_case("host")) {
            label.push(format!("{}: {}", l.name, super::render::marked(&l.value)));
        }
        let _ = writeln!(
            out,
            "    n{} -->|\"{}\"| n{id}",
            id - 1,
            label.iter().map(|s| mermaid_escape(s)).collect::<Vec<_>>().join("<br/>")
        );
        if r.client_view.as_ref().is_some_and(|v| v.forged) {
            forged_nodes.push(id);
        }
    }
    if !forged_nodes.is_empty() {
        out.push_str("    classDef forged stroke:#c0392b,stroke-width:3px,color:#c0392b\n");
        for id in forged_nodes {
            let _ = writeln!(out, "    class n{id} forged");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn mermaid_escape_covers_markup() {
        assert_eq!(mermaid_escape("a\"<b>"), "a#quot;#lt;b#gt;");
    }

    #[test]
    fn svg_marks_forged_text_and_escapes_it() {
        let sim = super::super::simulate_line(
            r#"client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" forges "X-Note: <b>&" -> nginx(realip 0.0.0.0/0) -> app"#,
        )
        .unwrap();
        let svg = svg(&sim);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains(
            r##"<tspan class="forged" fill="#c0392b" font-weight="bold">1.2.3.4</tspan>"##
        ));
        assert!(svg.contains("&lt;b&gt;&amp;"));
        assert!(!svg.contains("<b>&"));
        // nginx believed the forged entry: its box is outlined in red.
        assert!(svg.contains(r##"stroke="#c0392b""##));
        let m = mermaid(&sim);
        assert!(m.starts_with("flowchart TD\n"));
        assert!(m.contains("X-Forwarded-For: «1.2.3.4»"));
        assert!(m.contains("class n1 forged"));
        assert!(m.contains("#lt;b#gt;#amp;"));
    }
}
