//! Progress on a terminal: a bar over the approximate grant count, or a spinner.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over about `total` grants (a spinner when the count is unknown) on
/// stderr when both streams are a terminal; nothing when piped.
pub fn progress(what: &str, total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(n) if n > 0 => (
            ProgressBar::new(n),
            "{bar:30} {pos}/~{len} grants {msg} ({elapsed}, about {eta} left)",
        ),
        _ => (ProgressBar::new_spinner(), "{spinner} {pos} grants {msg} ({elapsed})"),
    };
    if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message(what.to_owned());
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}
