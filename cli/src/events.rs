//! `events replay`: publishes again what the events function kept in its failure queue.

use std::collections::HashMap;

use anyhow::Context;
use clap::Subcommand;
use offline_access::config::EventsConfig;

#[derive(Debug, Subcommand)]
pub enum Events {
    /// Publish the events kept in the failure queue (EventsFailures), each user's in
    /// version order; delete each message once all its events are taken
    Replay {
        /// Also delete the notes of unreadable records, once printed
        #[arg(long)]
        drop_notes: bool,
    },
}

pub async fn run(
    env: &HashMap<String, String>,
    aws: &aws_config::SdkConfig,
    command: Events,
    json: bool,
) -> anyhow::Result<()> {
    let Events::Replay { drop_notes } = command;
    let config = EventsConfig::from_env(env).context("the events function's variables")?;
    let publisher = offline_access::app::event_publisher(&config, aws);
    let queue = offline_access::app::event_keeper(&config, aws);
    let replayed = offline_access::events::replay(&queue, &publisher, drop_notes).await?;
    if json {
        let unreadable: Vec<_> = replayed
            .unreadable
            .iter()
            .map(|(sequence_number, sub)| serde_json::json!({"sequence_number": sequence_number, "sub": sub}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "events": replayed.events,
                "messages": replayed.messages,
                "left": replayed.left,
                "unreadable": unreadable,
                "positions": replayed.positions,
                "more": replayed.more,
            })
        );
        return Ok(());
    }
    println!(
        "published {} event(s) from {} message(s); {} message(s) left for the next replay",
        replayed.events, replayed.messages, replayed.left
    );
    for (sequence_number, sub) in &replayed.unreadable {
        let sub = sub.as_deref().unwrap_or("?");
        let what = if drop_notes { "note deleted" } else { "note kept" };
        println!("unreadable record {sequence_number} (sub {sub}): not published; {what}");
    }
    if replayed.more {
        println!("more messages may wait: run it again");
    }
    if replayed.positions > 0 {
        println!(
            "{} message(s) hold stream positions Lambda gave up (records over six hours old): read them in the queue",
            replayed.positions
        );
    }
    Ok(())
}
