//! `handler alerts` (the outbox per route) and `handler alert-test` (a test card to every route).

use crate::config::Config;
use crate::startup::Builder;

pub async fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let builder = Builder::new(config.clone());
    let http = builder.http_client()?;
    let archive = builder.archive(&http).await?;
    let routes = crate::alerts::routes::from_config(&config.alerts);
    let status = crate::alerts::status::build(&archive, &routes).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render());
    }
    Ok(())
}

/// Sends the test card; fails when a route failed or none is configured.
pub async fn test(config: &Config) -> anyhow::Result<()> {
    let builder = Builder::new(config.clone());
    let http = builder.http_client()?;
    let archive = builder.archive(&http).await?;
    let Some(dispatcher) = builder.alert_dispatcher(&http, archive)? else {
        anyhow::bail!(
            "no alert route is configured (ALERT_TEAMS_WEBHOOK_URLS, ALERT_WEBHOOK_URLS, ALERT_BOT_CONVERSATION)"
        );
    };
    let mut failed = 0;
    for (route, answer) in crate::alerts::alert_test(&dispatcher).await {
        match answer {
            Ok(a) if a.excerpt.is_empty() => println!("{}: answered {}", route.label(), a.status),
            Ok(a) => println!("{}: answered {}: {}", route.label(), a.status, a.excerpt),
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {e}", route.label());
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} route(s) failed the test");
    }
    Ok(())
}
