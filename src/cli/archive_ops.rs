//! `handler replay` and `handler report`: operations on the configured archive.

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::startup::Builder;

pub async fn replay(config: &Config) -> anyhow::Result<()> {
    let builder = Builder::new(config.clone());
    let http = builder.http_client()?;
    let archive = builder.archive(&http).await?;
    let keys = builder.certificate_store(&http).await?;
    let progress = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} replay [{bar:40}] {pos}/{len} objects")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let payloads = builder.payload_store(&http)?;
    let stats = crate::ops::replay::replay(&archive, &keys, payloads.as_deref(), &progress).await?;
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
    let builder = Builder::new(config.clone());
    let archive = builder.archive(&builder.http_client()?).await?;
    let report = crate::ops::report::build(&archive).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
