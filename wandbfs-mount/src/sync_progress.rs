//! How `wandbfs sync` shows progress: an `indicatif` bar on a terminal (rows done of rows
//! expected, rows/s, ETA, runs done of runs planned), plain log lines otherwise, nothing with
//! `--quiet`.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wandbfs::sync::{ProgressEvent, ProgressSink, RunStatus};

/// Progress on a terminal.
pub struct BarProgress {
    bar: ProgressBar,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    planned: u64,
    finished: u64,
    failed: u64,
}

impl BarProgress {
    /// A bar on stderr.
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows \
                 ({rate}, ETA {eta}) {msg}",
            )
            .map(|style| {
                style.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", state.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        BarProgress {
            bar,
            state: Mutex::new(Counts::default()),
        }
    }

    /// Prints a line above the bar.
    pub fn println(&self, line: &str) {
        self.bar.println(line);
    }

    /// A writer for log output that does not tear the bar.
    pub fn writer(&self) -> BarWriter {
        BarWriter {
            bar: self.bar.clone(),
            line: Vec::new(),
        }
    }

    /// Runs `f` with the bar hidden (for output on the same terminal).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn update_message(&self, counts: &Counts) {
        let failed = if counts.failed > 0 {
            format!(", {} failed", counts.failed)
        } else {
            String::new()
        };
        self.bar.set_message(format!(
            "runs {}/{}{failed}",
            counts.finished, counts.planned
        ));
    }
}

impl Default for BarProgress {
    fn default() -> Self {
        BarProgress::new()
    }
}

impl ProgressSink for BarProgress {
    fn event(&self, event: ProgressEvent) {
        let mut counts = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            ProgressEvent::ProjectPlanned {
                project,
                listed,
                jobs,
                expected_rows,
            } => {
                counts.planned += jobs;
                self.bar.inc_length(expected_rows);
                self.bar.println(format!(
                    "{project}: {listed} runs listed, {jobs} to sync (~{expected_rows} rows)"
                ));
            }
            ProgressEvent::Rows { rows, .. } => self.bar.inc(rows),
            ProgressEvent::RunFinished { run, status, error } => match status {
                RunStatus::Synced => counts.finished += 1,
                RunStatus::Failed => {
                    counts.finished += 1;
                    counts.failed += 1;
                    self.bar
                        .println(format!("{run}: failed: {}", error.unwrap_or_default()));
                }
                RunStatus::Skipped => {
                    counts.failed += 1;
                    self.bar.println(format!(
                        "{run}: skipped after repeated failures (--retry-failed to retry)"
                    ));
                }
                RunStatus::Deleted => self.bar.println(format!("{run}: deleted upstream")),
            },
            ProgressEvent::ProjectFinished { .. } => {}
        }
        self.update_message(&counts);
    }
}

/// Writes whole lines above the progress bar.
pub struct BarWriter {
    bar: ProgressBar,
    line: Vec<u8>,
}

impl Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(end) = self.line.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.bar.println(text);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            self.bar.println(text);
        }
        Ok(())
    }
}

/// Progress as log lines on stderr (for pipes, CI logs and files).
pub struct LogProgress {
    state: Mutex<LogState>,
}

struct LogState {
    started: Instant,
    last_report: Instant,
    rows: u64,
    rows_at_last_report: u64,
    planned: u64,
    finished: u64,
    expected_rows: u64,
}

/// How often the plain log reports throughput.
const LOG_EVERY: Duration = Duration::from_secs(5);

impl LogProgress {
    /// A logger starting now.
    pub fn new() -> Self {
        let now = Instant::now();
        LogProgress {
            state: Mutex::new(LogState {
                started: now,
                last_report: now,
                rows: 0,
                rows_at_last_report: 0,
                planned: 0,
                finished: 0,
                expected_rows: 0,
            }),
        }
    }
}

impl Default for LogProgress {
    fn default() -> Self {
        LogProgress::new()
    }
}

impl ProgressSink for LogProgress {
    fn event(&self, event: ProgressEvent) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            ProgressEvent::ProjectPlanned {
                project,
                listed,
                jobs,
                expected_rows,
            } => {
                s.planned += jobs;
                s.expected_rows += expected_rows;
                eprintln!(
                    "wandbfs sync: {project}: {listed} runs listed, {jobs} to sync \
                     (~{expected_rows} rows)"
                );
            }
            ProgressEvent::Rows { rows, .. } => {
                s.rows += rows;
                let now = Instant::now();
                let since = now.duration_since(s.last_report);
                if since >= LOG_EVERY {
                    let rate = (s.rows - s.rows_at_last_report) as f64 / since.as_secs_f64();
                    let eta = if rate > 0.0 && s.expected_rows > s.rows {
                        format!(", ETA {:.0}s", (s.expected_rows - s.rows) as f64 / rate)
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "wandbfs sync: {} rows ({rate:.0} rows/s{eta}), runs {}/{} \
                         [{:.0}s]",
                        s.rows,
                        s.finished,
                        s.planned,
                        s.started.elapsed().as_secs_f64()
                    );
                    s.last_report = now;
                    s.rows_at_last_report = s.rows;
                }
            }
            ProgressEvent::RunFinished { run, status, error } => {
                s.finished += 1;
                match status {
                    RunStatus::Synced => {}
                    RunStatus::Failed => {
                        eprintln!("wandbfs sync: {run}: failed: {}", error.unwrap_or_default())
                    }
                    RunStatus::Skipped => eprintln!(
                        "wandbfs sync: {run}: skipped after repeated failures (--retry-failed \
                         to retry)"
                    ),
                    RunStatus::Deleted => eprintln!("wandbfs sync: {run}: deleted upstream"),
                }
            }
            ProgressEvent::ProjectFinished { project } => {
                eprintln!("wandbfs sync: {project}: done");
            }
        }
    }
}
