//! What `get` and `put` say while bytes move, on stderr only (stdout is the result, for
//! scripts): a bar with the rate and the time left on a terminal, a plain line every second
//! when stderr is a file or a CI log (a bar's carriage returns turn a log into noise), and
//! nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain line is written when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Lines,
    Quiet,
}

impl Mode {
    /// The bar on a terminal, lines elsewhere, nothing when asked for quiet.
    pub fn pick(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

pub struct Progress {
    mode: Mode,
    /// `get NAME` or `put NAME`: what every line starts with.
    label: String,
    total: Option<u64>,
    position: u64,
    /// Where this process started (a resumed transfer's rate counts only what it moved).
    first: u64,
    started: Instant,
    last_line: Option<Instant>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: Mode, label: String, total: Option<u64>, position: u64) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}, {eta} left"
            } else {
                "{msg} {spinner} {binary_bytes} {binary_bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.clone());
            bar.set_position(position);
            bar.reset_eta();
            bar
        });
        Progress {
            mode,
            label,
            total,
            position,
            first: position,
            started: Instant::now(),
            last_line: None,
            bar,
        }
    }

    /// The total, once it is known (a download learns it from its first answer).
    pub fn set_total(&mut self, total: Option<u64>) {
        self.total = total;
        if let (Some(bar), Some(t)) = (&self.bar, total) {
            bar.set_length(t);
        }
    }

    /// The position moved back (a download that must start over): the rate starts over too.
    pub fn restart_at(&mut self, position: u64) {
        self.position = position;
        self.first = position;
        self.started = Instant::now();
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            bar.reset_eta();
        }
    }

    pub fn set(&mut self, position: u64) {
        self.position = position;
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_position(position);
                }
            }
            Mode::Lines => {
                if self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
                    self.line();
                }
            }
            Mode::Quiet => {}
        }
    }

    /// A remark between progress lines (a retry, a resume), not shown with `--quiet`.
    pub fn note(&self, text: &str) {
        let text = format!("burnlink: {}: {text}", self.label);
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(text),
            (None, Mode::Lines) => eprintln!("{text}"),
            _ => {}
        }
    }

    /// The closing line: how much, how long, how fast.
    pub fn finish(&mut self) {
        let elapsed = self.started.elapsed();
        let moved = self.position.saturating_sub(self.first);
        let text = format!(
            "burnlink: {}: {} in {:.1}s ({}/s)",
            self.label,
            human(self.position),
            elapsed.as_secs_f64(),
            human(rate(moved, elapsed) as u64)
        );
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.finish_and_clear();
                eprintln!("{text}");
            }
            (None, Mode::Lines) => eprintln!("{text}"),
            _ => {}
        }
    }

    /// Leaves the terminal clean when the transfer fails (the error follows on its own line).
    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    fn line(&mut self) {
        self.last_line = Some(Instant::now());
        let elapsed = self.started.elapsed();
        let per_s = rate(self.position.saturating_sub(self.first), elapsed);
        let mut text = format!("burnlink: {}: {}", self.label, human(self.position));
        if let Some(total) = self.total {
            let pct = (self.position as f64 / total.max(1) as f64 * 100.0).min(100.0);
            text.push_str(&format!(" of {} ({pct:.0}%)", human(total)));
        }
        text.push_str(&format!(", {}/s", human(per_s as u64)));
        if let Some(total) = self.total
            && per_s > 0.0
        {
            let left = total.saturating_sub(self.position) as f64 / per_s;
            text.push_str(&format!(", {}s left", left.ceil() as u64));
        }
        eprintln!("{text}");
    }
}

fn rate(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { bytes as f64 / secs } else { 0.0 }
}

/// `512 B`, `1.5 KiB`, `256.0 MiB`, `4.2 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(256 << 20), "256.0 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
