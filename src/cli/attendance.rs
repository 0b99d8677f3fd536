//! `handler attendance`: the attendance report of the configured archive's meetings.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::ops::attendance::{self, Format};
use crate::startup::Builder;

#[derive(Debug, clap::Args)]
pub struct AttendanceArgs {
    /// Only this meeting: its id (the thread id `19:meeting_...@thread.v2` or the bot's meeting
    /// id) or its join URL.
    #[arg(long)]
    pub meeting: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn run(args: AttendanceArgs, config: &Config) -> anyhow::Result<()> {
    let builder = Builder::new(config.clone());
    let archive = builder.archive(&builder.http_client()?).await?;
    let progress = progress_bar();
    let report = attendance::build(&archive, args.meeting.as_deref(), &progress).await?;
    progress.finish_and_clear();
    for (reason, n) in &report.unreadable {
        tracing::warn!(count = n, %reason, "meeting records skipped");
    }
    if let Some(wanted) = &args.meeting
        && report.meetings.is_empty()
    {
        anyhow::bail!(
            "no meeting {wanted:?} in {} ({} events read)",
            archive.location(),
            report.examined
        );
    }
    let text = attendance::render(&report.meetings, args.format);
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{} meeting(s) from {} events: {}",
                report.meetings.len(),
                report.examined,
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// A bar on standard error when it is a terminal (hidden for pipes, logs, CI). indicatif draws
/// at most 20 times a second and the bar is cleared at the end, so a small archive shows none.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} attendance [{bar:40}] {pos}/{len} events ({eta})")
            .expect("the template is valid")
            .progress_chars("=> "),
    )
}
