//! The audit's verdict and what supports it, as text or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::client::Target;
use super::matrix::{Fix, Probe, Sentinel};
use super::read::{Reader, Seen};

/// What one probe did to the answer.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The answer stayed the baseline.
    Ignored,
    /// The answer became a sentinel: `from` is the probe that sent it (normally this one; another
    /// when the target remembers an earlier request's address).
    Believed { seen: Seen, from: &'static Probe, sentinel: &'static Sentinel },
    /// The answer moved to something that is no sentinel.
    Changed(Seen),
    /// The status differed from the baseline's: the input was refused (or broke the target).
    Refused(u16),
    /// The answer had no address where `--read` looks.
    Unreadable(String),
    /// No answer: connection, TLS, HTTP or timeout.
    Failed(String),
}

/// A probe and its outcome.
#[derive(Debug)]
pub(crate) struct ProbeResult {
    pub(crate) probe: &'static Probe,
    pub(crate) outcome: Outcome,
}

/// The audit's conclusion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Verdict {
    /// Every probe was sent, answered and read, and none moved the answer.
    Clean,
    /// A forged input moved the answer.
    Spoofable,
    /// Nothing moved the answer, but not every probe was sent, answered or read, or the
    /// baseline drifted on its own.
    Inconclusive,
}

/// What the audit learnt, as gathered.
pub(crate) struct Facts<'a> {
    pub(crate) target: &'a Target,
    pub(crate) reader: &'a Reader,
    pub(crate) how: &'static str,
    pub(crate) baseline: Seen,
    pub(crate) again: Option<Result<Seen, String>>,
    pub(crate) results: Vec<ProbeResult>,
    pub(crate) max_requests: u32,
    pub(crate) rate: f64,
    pub(crate) probes_total: usize,
}

/// The report: `--format json` prints it as it is.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) verdict: Verdict,
    url: String,
    /// The one address every request went to.
    address: String,
    read: String,
    read_how: &'static str,
    /// The target's answer to a plain request: the auditor as the target sees it.
    baseline: String,
    /// The same, asked after the probes (absent when --max-requests left no request for it).
    baseline_again: Option<String>,
    baseline_again_error: Option<String>,
    requests: usize,
    max_requests: u32,
    rate: f64,
    probes_sent: usize,
    probes_total: usize,
    findings: Vec<Finding>,
    results: Vec<ResultRow>,
}

/// A forged input the target believed (high) or that moved its answer (medium).
#[derive(Debug, Serialize)]
struct Finding {
    probe: &'static str,
    severity: &'static str,
    sent: Vec<String>,
    answer: String,
    /// The sentinel the answer is, as sent.
    sentinel: Option<&'static str>,
    /// Where the sentinel sat in the forged lines.
    position: Option<&'static str>,
    /// The probe that sent the sentinel, when another (the target remembers addresses).
    sent_by: Option<&'static str>,
    kind: Fix,
    problem: &'static str,
    fix: &'static str,
}

/// One probe's row.
#[derive(Debug, Serialize)]
struct ResultRow {
    probe: &'static str,
    sent: Vec<String>,
    outcome: &'static str,
    answer: Option<String>,
    status: Option<u16>,
    error: Option<String>,
}

fn sent(probe: &Probe) -> Vec<String> {
    probe.lines.iter().map(|(n, v)| format!("{n}: {v}")).collect()
}

impl Report {
    pub(crate) fn new(facts: Facts<'_>) -> Report {
        let stable = match &facts.again {
            Some(Ok(again)) => again.same(&facts.baseline),
            Some(Err(_)) | None => false,
        };
        let mut findings = Vec::new();
        let mut rows = Vec::new();
        let mut unsure = facts.results.len() < facts.probes_total || !stable;
        for r in &facts.results {
            let p = r.probe;
            let (outcome, answer, status, error) = match &r.outcome {
                Outcome::Ignored => ("ignored", Some(facts.baseline.to_string()), None, None),
                Outcome::Believed { seen, from, sentinel } => {
                    findings.push(Finding {
                        probe: p.name,
                        severity: "high",
                        sent: sent(p),
                        answer: seen.to_string(),
                        sentinel: Some(sentinel.text),
                        position: Some(sentinel.role),
                        sent_by: (from.name != p.name).then_some(from.name),
                        kind: sentinel.fix,
                        problem: sentinel.fix.problem(),
                        fix: sentinel.fix.fix(),
                    });
                    ("believed", Some(seen.to_string()), None, None)
                }
                Outcome::Changed(seen) => {
                    // A baseline that drifts by itself explains a moved answer as well as the
                    // probe does: not a finding then, only a reason for doubt.
                    if stable {
                        findings.push(Finding {
                            probe: p.name,
                            severity: "medium",
                            sent: sent(p),
                            answer: seen.to_string(),
                            sentinel: None,
                            position: None,
                            sent_by: None,
                            kind: p.if_changed,
                            problem: p.if_changed.problem(),
                            fix: p.if_changed.fix(),
                        });
                    }
                    ("changed", Some(seen.to_string()), None, None)
                }
                Outcome::Refused(status) => ("refused", None, Some(*status), None),
                Outcome::Unreadable(e) => {
                    unsure = true;
                    ("unreadable", None, None, Some(e.clone()))
                }
                Outcome::Failed(e) => {
                    unsure = true;
                    ("failed", None, None, Some(e.clone()))
                }
            };
            rows.push(ResultRow { probe: p.name, sent: sent(p), outcome, answer, status, error });
        }
        let verdict = if !findings.is_empty() {
            Verdict::Spoofable
        } else if unsure {
            Verdict::Inconclusive
        } else {
            Verdict::Clean
        };
        let (baseline_again, baseline_again_error) = match facts.again {
            Some(Ok(seen)) => (Some(seen.to_string()), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let requests = 1
            + facts.results.len()
            + usize::from(baseline_again.is_some() || baseline_again_error.is_some());
        Report {
            verdict,
            url: facts.target.url.clone(),
            address: facts.target.addr.to_string(),
            read: facts.reader.to_string(),
            read_how: facts.how,
            baseline: facts.baseline.to_string(),
            baseline_again,
            baseline_again_error,
            requests,
            max_requests: facts.max_requests,
            rate: facts.rate,
            probes_sent: facts.results.len(),
            probes_total: facts.probes_total,
            findings,
            results: rows,
        }
    }

    /// The report for people.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "trueip audit {} (every request to {}; redirects not followed)",
            self.url, self.address
        );
        let _ = writeln!(out, "read:     {} ({})", self.read, self.read_how);
        let again = match (&self.baseline_again, &self.baseline_again_error) {
            (Some(a), _) => format!("after the probes: {a}"),
            (None, Some(e)) => format!("after the probes: no answer: {e}"),
            (None, None) => "not asked again: --max-requests left no request for it".to_owned(),
        };
        let _ = writeln!(out, "baseline: {} (you, as the target sees you; {again})", self.baseline);
        let _ = writeln!(
            out,
            "sent:     {} requests, {} of {} probes, at most {}/s\n",
            self.requests, self.probes_sent, self.probes_total, self.rate
        );
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:<6} {}  {}",
                f.severity.to_uppercase(),
                f.probe,
                f.sent.join("  ")
            );
            match (f.sentinel, f.position) {
                (Some(sentinel), Some(position)) => {
                    let by = f
                        .sent_by
                        .map(|p| format!(" (sent earlier by probe {p}: the target remembers it)"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "       answered {}: believed {sentinel}, {position}{by}",
                        f.answer
                    );
                }
                _ => {
                    let _ =
                        writeln!(out, "       answered {} instead of {}", f.answer, self.baseline);
                }
            }
            let _ = writeln!(out, "       problem: {}", f.problem);
            let _ = writeln!(out, "       fix: {}\n", f.fix);
        }
        let count = |o: &str| self.results.iter().filter(|r| r.outcome == o).count();
        for r in self.results.iter().filter(|r| matches!(r.outcome, "unreadable" | "failed")) {
            let _ = writeln!(
                out,
                "{}  {}: {}",
                r.outcome.to_uppercase(),
                r.probe,
                r.error.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(
            out,
            "outcomes: {} ignored, {} believed, {} changed, {} refused (another status than the baseline's), {} unreadable, {} failed",
            count("ignored"),
            count("believed"),
            count("changed"),
            count("refused"),
            count("unreadable"),
            count("failed")
        );
        let _ = match self.verdict {
            Verdict::Spoofable => writeln!(
                out,
                "SPOOFABLE: {} forged input(s) moved the target's answer; fix the ones marked HIGH first.",
                self.findings.len()
            ),
            Verdict::Clean => writeln!(
                out,
                "CLEAN: none of the {} forged inputs moved the target's answer from {}. This holds \
                 for this URL reached from here; another path, host or network route may read \
                 other headers.",
                self.probes_sent, self.baseline
            ),
            Verdict::Inconclusive => writeln!(
                out,
                "INCONCLUSIVE: nothing was believed, but {}.",
                if self.probes_sent < self.probes_total {
                    format!(
                        "only {} of {} probes fit in --max-requests {}",
                        self.probes_sent, self.probes_total, self.max_requests
                    )
                } else if count("unreadable") + count("failed") > 0 {
                    "some probes got no readable answer (above)".to_owned()
                } else {
                    format!("the baseline was not confirmed ({again})")
                }
            ),
        };
        out
    }
}
