//! The bench's results: one markdown table per scenario, printed as they come and at the end.

use std::time::Duration;

#[derive(Default)]
pub struct Report {
    sections: Vec<Section>,
}

struct Section {
    title: String,
    rows: Vec<(String, String)>,
    notes: Vec<String>,
}

impl Report {
    pub fn section(&mut self, title: impl Into<String>) {
        let title = title.into();
        eprintln!("== {title}");
        self.sections.push(Section {
            title,
            rows: Vec::new(),
            notes: Vec::new(),
        });
    }

    fn current(&mut self) -> &mut Section {
        if self.sections.is_empty() {
            self.section("bench");
        }
        self.sections.last_mut().expect("a section")
    }

    pub fn row(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        eprintln!("  {what}: {value}");
        self.current().rows.push((what, value));
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("  note: {note}");
        self.current().notes.push(note);
    }

    /// Markdown, ready for `BENCHMARK.md`.
    pub fn print(&self, header: &str) {
        println!("\n{header}");
        for section in &self.sections {
            println!("\n### {}\n", section.title);
            println!("| measurement | result |\n|---|---|");
            for (what, value) in &section.rows {
                println!("| {what} | {} |", value.replace('|', "\\|"));
            }
            for note in &section.notes {
                println!("\n* {note}");
            }
        }
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// `a / b` as `0.93×`.
pub fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

/// Nearest-rank percentile (`p` in 0..=100) of a non-empty sample.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn spread(v: &[Duration]) -> String {
    v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
}
