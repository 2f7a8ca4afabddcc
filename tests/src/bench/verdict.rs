//! [`Verdict`]: one target of the issue, aws-hop's figure against it, PASS or MISS; and
//! the summary table that lists them all at the end of the report.

use super::table::Table;

/// One line of the summary.
#[derive(Clone, Debug)]
pub(crate) struct Verdict {
    /// What is measured, e.g. `upload MB/s vs ssh`.
    pub(crate) measure: String,
    /// aws-hop's figure.
    pub(crate) aws_hop: String,
    /// The baseline it is compared with (an OpenSSH figure or a fixed bound).
    pub(crate) baseline: String,
    /// The target, e.g. `ratio >= 1.0`.
    pub(crate) target: String,
    /// `Some(true)` PASS, `Some(false)` MISS, `None` for information only.
    pub(crate) pass: Option<bool>,
}

impl Verdict {
    /// `PASS`, `MISS` or `info`.
    pub(crate) fn result(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "info",
        }
    }
}

/// The summary table of `verdicts`.
pub(crate) fn summary(verdicts: &[Verdict]) -> String {
    let mut table = Table::new(&["measure", "aws-hop", "baseline", "target", "result"])
        .left(3)
        .left(4);
    for v in verdicts {
        table.row(vec![
            v.measure.clone(),
            v.aws_hop.clone(),
            v.baseline.clone(),
            v.target.clone(),
            v.result().to_owned(),
        ]);
    }
    table.render()
}
