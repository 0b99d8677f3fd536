//! `handler replay` and `handler report`: operations on the configured archive.

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;

pub async fn replay(config: &Config) -> anyhow::Result<()> {
    let archive = crate::archive::open(config).await?;
    let keys = crate::app::certificate_store(config).await?;
    let progress = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} replay [{bar:40}] {pos}/{len} objects")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let payloads = crate::app::payload_store(config)?;
    let stats = crate::replay::replay(&archive, &keys, payloads.as_deref(), &progress).await?;
    println!(
        "replay of {}: {} examined, {} recovered, {} already archived, {} still quarantined, {} unreadable",
        archive.location(),
        stats.examined,
        stats.recovered,
        stats.already_done,
        stats.still_quarantined,
        stats.unreadable
    );
    Ok(())
}

pub async fn report(config: &Config, json: bool) -> anyhow::Result<()> {
    let archive = crate::archive::open(config).await?;
    let report = crate::report::build(&archive).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
