//! Sending notifications: one background thread per run, with its own small runtime, so a
//! slow or dead webhook never holds a step up. Each message has a budget (the entry's
//! `timeout`, 5s by default) that covers every attempt: one try and two retries for an
//! error answer, never more than the budget for a hanging server.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One message for one webhook.
pub struct Message {
    pub url: String,
    pub webhook_env: String,
    pub notification: &'static str,
    pub body: serde_json::Value,
    pub timeout: Duration,
}

/// A message that was not delivered: (webhook env var, notification, why).
pub type Failure = (String, &'static str, String);

pub struct Delivery {
    queue: Option<tokio::sync::mpsc::UnboundedSender<Message>>,
    failures: mpsc::Receiver<Failure>,
    done: mpsc::Receiver<()>,
    /// The budget of every message queued and not yet known to be through.
    budget: Duration,
    /// The webhooks written to (their env vars), to name in an abandonment.
    webhooks: Vec<String>,
}

/// Attempts per message: the first and two retries.
const ATTEMPTS: u32 = 3;

impl Delivery {
    pub fn start() -> Result<Delivery, String> {
        let (queue, mut incoming) = tokio::sync::mpsc::unbounded_channel::<Message>();
        let (report, failures) = mpsc::channel();
        let (finished, done) = mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the notification runtime: {e}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot start the notification client: {e}"))?;
        std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                runtime.block_on(async {
                    while let Some(message) = incoming.recv().await {
                        if let Err(error) = send(&client, &message).await {
                            let _ = report.send((message.webhook_env, message.notification, error));
                        }
                    }
                });
                let _ = finished.send(());
            })
            .map_err(|e| format!("cannot start the notification thread: {e}"))?;
        Ok(Delivery { queue: Some(queue), failures, done, budget: Duration::ZERO, webhooks: Vec::new() })
    }

    /// Queues a message; returns at once.
    pub fn send(&mut self, message: Message) {
        self.budget += message.timeout;
        if !self.webhooks.contains(&message.webhook_env) {
            self.webhooks.push(message.webhook_env.clone());
        }
        if let Some(queue) = &self.queue {
            let _ = queue.send(message);
        }
    }

    /// Failures reported since the last call.
    pub fn failures(&mut self) -> Vec<Failure> {
        self.failures.try_iter().collect()
    }

    /// No more messages: waits for those queued, at most their budgets together (what
    /// is still out after that is abandoned, and reported as such).
    pub fn finish(&mut self) -> Vec<Failure> {
        self.queue = None;
        let budget = self.budget + Duration::from_millis(200);
        let abandoned = self.done.recv_timeout(budget).is_err();
        let mut failures = self.failures();
        if abandoned {
            failures.push((
                self.webhooks.join(", "),
                "finished",
                format!("still not delivered after {}s", budget.as_secs()),
            ));
        }
        failures
    }
}

async fn send(client: &reqwest::Client, message: &Message) -> Result<(), String> {
    let deadline = Instant::now() + message.timeout;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let request = client.post(&message.url).json(&message.body).send();
        match tokio::time::timeout(left, request).await {
            Ok(Ok(response)) if response.status().is_success() => return Ok(()),
            Ok(Ok(response)) => last = format!("HTTP {}", response.status()),
            // Never the URL in an error: it is a credential.
            Ok(Err(err)) => last = err.without_url().to_string(),
            Err(_) => {
                return Err(format!("no answer within {}", humantime::format_duration(message.timeout)));
            }
        }
        if attempt < ATTEMPTS {
            let pause =
                Duration::from_millis(200 * u64::from(attempt)).min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }
    Err(format!("{last} after {ATTEMPTS} attempts"))
}
