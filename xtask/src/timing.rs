//! Phase timing: every long step prints how long it took, and a summary can be printed at the end.

use std::sync::Mutex;
use std::time::{Duration, Instant};

static PHASES: Mutex<Vec<(String, Duration, bool)>> = Mutex::new(Vec::new());

/// Run `f` as a named phase: announce it, time it, record the outcome for [`summary`].
pub fn phase<T, E>(name: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    eprintln!("==> {name}");
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    let ok = r.is_ok();
    eprintln!(
        "<== {name}: {} in {}",
        if ok { "ok" } else { "FAILED" },
        fmt(took)
    );
    PHASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name.to_string(), took, ok));
    r
}

/// `1m 02.3s` / `4.2s`.
pub fn fmt(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m {:04.1}s", (s / 60.0) as u64, s % 60.0)
    } else {
        format!("{s:.1}s")
    }
}

/// A table of all phases run so far in this process.
pub fn summary() -> String {
    let phases = PHASES.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::from("phase timings:\n");
    for (name, took, ok) in phases.iter() {
        out.push_str(&format!(
            "  {:<44} {:>10}  {}\n",
            name,
            fmt(*took),
            if *ok { "ok" } else { "FAILED" }
        ));
    }
    out
}
