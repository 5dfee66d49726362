//! What a run found: printed as it goes, then written to `bench/RESULTS.md`.

use std::fmt::Write as _;
use std::time::Duration;

/// Median, lowest and highest of a set of measurements.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Spread {
    pub fn of(mut xs: Vec<f64>) -> Spread {
        assert!(!xs.is_empty(), "a spread of nothing");
        xs.sort_by(|a, b| a.total_cmp(b));
        Spread {
            median: xs[xs.len() / 2],
            lo: xs[0],
            hi: xs[xs.len() - 1],
        }
    }

    /// The spread of the per-round ratios `ours[i] / theirs[i]` (each round's two figures
    /// measured together, so that the machine's drift between rounds cancels).
    pub fn of_ratios(ours: &[f64], theirs: &[f64]) -> Spread {
        assert_eq!(ours.len(), theirs.len(), "one figure of each per round");
        Spread::of(ours.iter().zip(theirs).map(|(o, t)| o / t).collect())
    }

    /// `12 300/s (11 900..12 800)`-style text with `digits` decimals.
    pub fn show(&self, digits: usize, unit: &str) -> String {
        if self.lo == self.hi {
            format!("{} {unit}", num(self.median, digits))
        } else {
            format!(
                "{} {unit} ({}..{})",
                num(self.median, digits),
                num(self.lo, digits),
                num(self.hi, digits)
            )
        }
    }
}

/// A number with thin thousands separators.
pub fn num(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let text = format!("{x:.digits$}");
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_owned(), format!(".{f}")),
        None => (text.clone(), String::new()),
    };
    let (sign, digits_only) = match int.strip_prefix('-') {
        Some(d) => ("-", d.to_owned()),
        None => ("", int),
    };
    let mut grouped = String::new();
    for (i, c) in digits_only.chars().enumerate() {
        if i > 0 && (digits_only.len() - i).is_multiple_of(3) && digits_only.len() > 4 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

/// p-th percentile (0..=1) of sorted latencies, in ms.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[derive(Default)]
pub struct Report {
    /// figure | Chronicle | raw, same run | goal | met
    rows: Vec<[String; 5]>,
    ratios: Vec<String>,
    notes: Vec<String>,
}

impl Report {
    pub fn row(&mut self, figure: &str, chronicle: String, raw: String, goal: &str, met: String) {
        println!("-> {figure}: {chronicle} | {raw} | goal {goal}: {met}");
        self.rows
            .push([figure.into(), chronicle, raw, goal.into(), met]);
    }

    /// Prints and keeps `ratio <name> <median> (range lo..hi)`.
    pub fn ratio(&mut self, name: &str, s: Spread) {
        let line = format!(
            "ratio {name} {:.2} (range {:.2}..{:.2})",
            s.median, s.lo, s.hi
        );
        println!("{line}");
        self.ratios.push(line);
    }

    pub fn note(&mut self, text: String) {
        println!("note: {text}");
        self.notes.push(text);
    }

    /// `analysis`: hand-written Markdown appended as is (bench/ANALYSIS.md: what bounds
    /// the goals not met, with the profiles).
    pub fn markdown(&self, machine: &str, how: &str, analysis: Option<&str>) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmark results\n");
        let _ = writeln!(
            md,
            "Written by `chronicle-bench` (see `bench/src/`); every figure is the median of its \
             rounds with the range in brackets, Chronicle and the raw substrate measured in the \
             same run on the same servers. Numbers are for this machine only; the ratios are the \
             point.\n"
        );
        let _ = writeln!(md, "## Machine\n\n{machine}\n");
        let _ = writeln!(md, "## Run\n\n{how}\n");
        let _ = writeln!(
            md,
            "## Figures\n\n| figure | Chronicle | raw, same run | goal | met |\n|---|---|---|---|---|"
        );
        for r in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r[0], r[1], r[2], r[3], r[4]
            );
        }
        let _ = writeln!(md, "\n## Ratios\n\n```");
        for r in &self.ratios {
            let _ = writeln!(md, "{r}");
        }
        let _ = writeln!(md, "```");
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        if let Some(analysis) = analysis {
            let _ = writeln!(md, "\n{}", analysis.trim_end());
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_group_thousands_and_keep_decimals() {
        assert_eq!(num(1234.0, 0), "1234");
        assert_eq!(num(45_436.4, 0), "45 436");
        assert_eq!(num(1_000_000.0, 0), "1 000 000");
        assert_eq!(num(0.456, 2), "0.46");
        assert_eq!(num(-12_345.5, 1), "-12 345.5");
        assert_eq!(num(f64::NAN, 1), "n/a");
    }

    #[test]
    fn a_spread_is_the_median_and_its_range() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.lo, s.hi), (2.0, 1.0, 3.0));
        assert_eq!(s.show(1, "ms"), "2.0 ms (1.0..3.0)");
    }
}
