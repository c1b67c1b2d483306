//! A small Cloud Storage client over the JSON API, on reqwest: the four calls the shared
//! store needs (multipart insert with `ifGenerationMatch`, object metadata, media, list by
//! prefix). A crate was not used: the official `google-cloud-storage` brings gRPC and a large
//! dependency tree for these four calls, and every call here must carry a precondition and a
//! short, configurable timeout.
//!
//! The calls are synchronous for the caller: they run on a private runtime on its own thread,
//! so the executor's subscribers, the lease renewer and the plain commands can all use them.

use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use super::auth::Auth;

/// What a call can come back with, beyond success.
#[derive(Debug)]
pub enum GcsError {
    /// `ifGenerationMatch` did not hold (HTTP 412).
    Precondition,
    NotFound,
    /// The object's content is bigger than [`super::MAX_OBJECT_BYTES`]: no lock, record or
    /// approval is, so it is junk, and reading it whole would cost memory and time.
    TooBig,
    /// Anything else: the message says what.
    Other(String),
}

impl std::fmt::Display for GcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GcsError::Precondition => f.write_str("the object changed meanwhile (precondition failed)"),
            GcsError::NotFound => f.write_str("not found"),
            GcsError::TooBig => write!(f, "bigger than {} bytes", super::MAX_OBJECT_BYTES),
            GcsError::Other(message) => f.write_str(message),
        }
    }
}

/// The metadata of one object version.
#[derive(Debug, Clone, Deserialize)]
pub struct Object {
    pub name: String,
    #[serde(deserialize_with = "number_in_string")]
    pub generation: i64,
    pub updated: chrono::DateTime<chrono::Utc>,
    /// Bytes; Cloud Storage sends it as a string, like the generation.
    #[serde(default, deserialize_with = "number_in_string")]
    pub size: u64,
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
}

fn number_in_string<'de, D: serde::Deserializer<'de>, N: std::str::FromStr<Err: std::fmt::Display>>(
    d: D,
) -> Result<N, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    bucket: String,
    auth: Auth,
    runtime: tokio::runtime::Handle,
}

impl Client {
    pub fn new(bucket: &str, endpoint: &str, auth: Auth, timeout: Duration) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot set up the Cloud Storage client: {e}"))?;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("runbook-store".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                match runtime {
                    Ok(runtime) => {
                        let _ = sender.send(Ok(runtime.handle().clone()));
                        // Serves calls until the process ends.
                        runtime.block_on(std::future::pending::<()>());
                    }
                    Err(err) => {
                        let _ = sender.send(Err(format!("cannot start the store's runtime: {err}")));
                    }
                }
            })
            .map_err(|e| format!("cannot start the store's thread: {e}"))?;
        let runtime = receiver.recv().map_err(|e| format!("cannot start the store's runtime: {e}"))??;
        Ok(Client { http, base: endpoint.trim_end_matches('/').to_owned(), bucket: bucket.to_owned(), auth, runtime })
    }

    /// Runs one request on the store's thread and waits for it.
    fn call<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = Result<T, GcsError>> + Send + 'static,
    ) -> Result<T, GcsError> {
        let (sender, receiver) = mpsc::channel();
        self.runtime.spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver.recv().map_err(|_| GcsError::Other("the store's thread stopped".into()))?
    }

    fn request(&self, method: reqwest::Method, url: String) -> Result<reqwest::RequestBuilder, GcsError> {
        let request = self.http.request(method, url);
        Ok(match self.auth.token().map_err(GcsError::Other)? {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    fn object_url(&self, name: &str) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.base, self.bucket, encode(name))
    }

    /// Creates or replaces `name` only if its generation is `if_generation` (0: absent).
    pub fn insert(
        &self,
        name: &str,
        body: &[u8],
        if_generation: i64,
        metadata: &[(&str, &str)],
    ) -> Result<Object, GcsError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch={if_generation}",
            self.base, self.bucket
        );
        let meta: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect();
        let head = serde_json::json!({"name": name, "contentType": "application/json", "metadata": meta});
        // The emulator (and the real service) enforce preconditions on multipart uploads.
        let boundary = "runbook-store-boundary-7f3a9c";
        let mut payload = Vec::with_capacity(body.len() + 512);
        payload.extend_from_slice(
            format!("--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{head}\r\n").as_bytes(),
        );
        payload.extend_from_slice(format!("--{boundary}\r\ncontent-type: application/json\r\n\r\n").as_bytes());
        payload.extend_from_slice(body);
        payload.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = self
            .request(reqwest::Method::POST, url)?
            .header("content-type", format!("multipart/related; boundary={boundary}"))
            .body(payload);
        self.call(async move { json(request.send().await).await })
    }

    /// An object's metadata, and the store's clock when it answered.
    pub fn metadata(&self, name: &str) -> Result<(Object, chrono::DateTime<chrono::Utc>), GcsError> {
        let request = self.request(reqwest::Method::GET, self.object_url(name))?;
        self.call(async move {
            let response = checked(request.send().await)?;
            let date = response
                .headers()
                .get("date")
                .and_then(|d| d.to_str().ok())
                .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                .map(|d| d.with_timezone(&chrono::Utc));
            let date = date.ok_or_else(|| GcsError::Other("the store's answer carries no Date".into()))?;
            let object = response.json::<Object>().await.map_err(|e| GcsError::Other(e.to_string()))?;
            Ok((object, date))
        })
    }

    /// The contents of one object version (`generation`, or the live one).
    pub fn media(&self, name: &str, generation: Option<i64>) -> Result<Vec<u8>, GcsError> {
        let mut url = format!("{}?alt=media", self.object_url(name));
        if let Some(generation) = generation {
            url.push_str(&format!("&generation={generation}"));
        }
        let request = self.request(reqwest::Method::GET, url)?;
        self.call(async move {
            let response = checked(request.send().await)?;
            bounded(response).await
        })
    }

    /// Every object whose name starts with `prefix`, in name order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>, GcsError> {
        let mut objects = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut url = format!("{}/storage/v1/b/{}/o?prefix={}", self.base, self.bucket, encode(prefix));
            if let Some(token) = &page {
                url.push_str(&format!("&pageToken={}", encode(token)));
            }
            let request = self.request(reqwest::Method::GET, url)?;
            let listing: Listing = self.call(async move { json(request.send().await).await })?;
            objects.extend(listing.items);
            match listing.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page = Some(token),
                None => break,
            }
        }
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// Makes the bucket (tests against the emulator start with none).
    #[cfg(test)]
    pub fn create_bucket(&self) -> Result<(), GcsError> {
        let url = format!("{}/storage/v1/b", self.base);
        let request = self.request(reqwest::Method::POST, url)?.json(&serde_json::json!({"name": self.bucket}));
        self.call(async move { checked(request.send().await).map(|_| ()) })
    }

    /// Fetches several objects at once (history reads a few records of every run).
    pub fn media_many(&self, names: Vec<String>) -> Vec<Result<Vec<u8>, GcsError>> {
        let requests: Vec<Result<reqwest::RequestBuilder, GcsError>> = names
            .iter()
            .map(|name| self.request(reqwest::Method::GET, format!("{}?alt=media", self.object_url(name))))
            .collect();
        let joined = self.call(async move {
            let mut tasks = Vec::new();
            for request in requests {
                tasks.push(tokio::spawn(async move {
                    let response = checked(request?.send().await)?;
                    bounded(response).await
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap_or_else(|e| Err(GcsError::Other(e.to_string()))));
            }
            Ok(results)
        });
        joined.unwrap_or_else(|e| names.iter().map(|_| Err(GcsError::Other(e.to_string()))).collect())
    }
}

fn checked(response: Result<reqwest::Response, reqwest::Error>) -> Result<reqwest::Response, GcsError> {
    let response = response.map_err(|e| {
        GcsError::Other(if e.is_timeout() { "the store did not answer in time".to_owned() } else { e.to_string() })
    })?;
    match response.status().as_u16() {
        200..=299 => Ok(response),
        412 => Err(GcsError::Precondition),
        404 => Err(GcsError::NotFound),
        code => Err(GcsError::Other(format!("the store answered HTTP {code}"))),
    }
}

/// A body read up to [`super::MAX_OBJECT_BYTES`]: an object replaced by a bigger one since
/// it was listed is refused partway, not read whole.
async fn bounded(mut response: reqwest::Response) -> Result<Vec<u8>, GcsError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| GcsError::Other(e.to_string()))? {
        body.extend_from_slice(&chunk);
        if u64::try_from(body.len()).unwrap_or(u64::MAX) > super::MAX_OBJECT_BYTES {
            return Err(GcsError::TooBig);
        }
    }
    Ok(body)
}

async fn json<T: serde::de::DeserializeOwned>(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, GcsError> {
    checked(response)?.json::<T>().await.map_err(|e| GcsError::Other(format!("unexpected answer from the store: {e}")))
}

/// Percent-encodes an object name for a URL path segment or query value.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}
