//! `ptest events`.

use std::process::ExitCode;
use std::time::Duration;

use ptest_core::{Event, EventQuery, Manager};

use crate::Failure;
use crate::cli::EventsArgs;

/// How often `--follow` looks for new events.
const POLL: Duration = Duration::from_millis(200);

/// Prints the event log, and with `--follow` keeps printing until Ctrl-C.
pub async fn run(manager: &Manager, args: EventsArgs) -> Result<ExitCode, Failure> {
    let mut query = EventQuery {
        after: None,
        env: args.env.clone(),
        limit: args.limit,
    };
    loop {
        let events = manager.events(&query)?;
        for event in &events {
            print(event, args.json);
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(last) = events.last() {
            query.after = Some(last.id);
        }
        query.limit = None;
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn print(event: &Event, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(event).expect("events serialize")
        );
        return;
    }
    let details = match &event.details {
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        d => d.to_string(),
    };
    println!(
        "{}  {:<30}{:<20}{}",
        event.time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
        event.event,
        event.env_name.as_deref().unwrap_or("-"),
        details
    );
}
