//! Credentials for Cloud Storage. `STORAGE_EMULATOR_HOST` (the variable Google's client
//! libraries use) means an emulator: no credentials at all. Otherwise the operator's gcloud
//! gives an access token and its expiry (`gcloud config config-helper`), cached until
//! shortly before it expires; on CI the `google-github-actions/auth` step sets gcloud up.

use std::sync::Mutex;

pub struct Auth {
    emulator: bool,
    cached: Mutex<Option<Token>>,
}

struct Token {
    value: String,
    expires: chrono::DateTime<chrono::Utc>,
}

/// What gcloud says about the active account and its token.
#[derive(serde::Deserialize)]
struct Helper {
    credential: Credential,
}

#[derive(serde::Deserialize)]
struct Credential {
    access_token: String,
    token_expiry: Option<String>,
}

impl Auth {
    pub fn new(emulator: bool) -> Auth {
        Auth { emulator, cached: Mutex::new(None) }
    }

    /// A bearer token, or none against an emulator.
    pub fn token(&self) -> Result<Option<String>, String> {
        if self.emulator {
            return Ok(None);
        }
        let mut cached = self.cached.lock().map_err(|_| "the token cache is poisoned".to_owned())?;
        let margin = chrono::Duration::seconds(60);
        if let Some(token) = cached.as_ref()
            && token.expires - margin > chrono::Utc::now()
        {
            return Ok(Some(token.value.clone()));
        }
        let helper = config_helper()?;
        let expires = helper
            .credential
            .token_expiry
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(|| chrono::Utc::now() + chrono::Duration::minutes(5), |t| t.with_timezone(&chrono::Utc));
        let value = helper.credential.access_token.clone();
        *cached = Some(Token { value: value.clone(), expires });
        Ok(Some(value))
    }
}

fn config_helper() -> Result<Helper, String> {
    let output = std::process::Command::new("gcloud")
        .args(["config", "config-helper", "--format=json"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run gcloud for Cloud Storage credentials: {e} (set up gcloud, or STORAGE_EMULATOR_HOST for an emulator)"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "gcloud gave no access token for Cloud Storage (run `gcloud auth login`): {}",
            stderr.trim()
        ));
    }
    let helper: Helper =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cannot read gcloud's credentials: {e}"))?;
    Ok(helper)
}
