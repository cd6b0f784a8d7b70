//! Client of the OpenAI-compatible LLM behind the RAG service.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::OnceCell;

/// Errors talking to the LLM.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The HTTP client could not be built.
    #[error("cannot build the LLM HTTP client")]
    Client(#[source] reqwest::Error),
    /// The request did not get a response.
    #[error("LLM request to {url} failed")]
    Request {
        /// Endpoint.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
}

/// Installs ring as the process-wide rustls crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An OpenAI-compatible chat completions endpoint.
#[derive(Debug)]
pub struct LlmClient {
    client: reqwest::Client,
    url: String,
    models_url: String,
    secret: Option<String>,
    model: OnceCell<Option<String>>,
}

/// Turns `LLM_INFERENCE_URL` into the chat completions URL and the models URL.
pub fn endpoint_urls(url: &str) -> (String, String) {
    let trimmed = url.trim().trim_end_matches('/');
    let chat = if trimmed.contains("/chat/completions") {
        trimmed.to_owned()
    } else if trimmed.ends_with("/v1") {
        format!("{trimmed}/chat/completions")
    } else if let Some(base) = trimmed.strip_suffix("/v1/completions") {
        format!("{base}/v1/chat/completions")
    } else {
        format!("{trimmed}/v1/chat/completions")
    };
    let base = match chat.find("/v1/") {
        Some(i) => chat[..i].to_owned(),
        None => chat.rsplit_once("/chat/completions").map(|(b, _)| b.to_owned()).unwrap_or_default(),
    };
    (chat, format!("{base}/v1/models"))
}

impl LlmClient {
    /// Creates a client for `url` with an optional bearer secret.
    pub fn new(url: &str, secret: Option<String>, timeout: Duration) -> Result<Self, LlmError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("KAITO-RagEngine/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(LlmError::Client)?;
        let (url, models_url) = endpoint_urls(url);
        Ok(Self { client, url, models_url, secret: secret.filter(|s| !s.is_empty()), model: OnceCell::new() })
    }

    /// Chat completions URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first model listed by the server's `/v1/models`, discovered once.
    pub async fn default_model(&self) -> Option<String> {
        self.model
            .get_or_init(|| async {
                let mut req = self.client.get(&self.models_url);
                if let Some(s) = &self.secret {
                    req = req.bearer_auth(s);
                }
                let resp = req.send().await.ok()?;
                let v: Value = resp.json().await.ok()?;
                v.get("data")?.as_array()?.first()?.get("id")?.as_str().map(str::to_owned)
            })
            .await
            .clone()
    }

    /// Posts a chat completions body and returns the raw response (streamed or not).
    pub async fn send(&self, body: &Value) -> Result<reqwest::Response, LlmError> {
        let mut req = self.client.post(&self.url).json(body);
        if let Some(s) = &self.secret {
            req = req.bearer_auth(s);
        }
        req.send().await.map_err(|source| LlmError::Request { url: self.url.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_urls;

    #[test]
    fn urls() {
        assert_eq!(
            endpoint_urls("http://llm/v1/chat/completions"),
            ("http://llm/v1/chat/completions".into(), "http://llm/v1/models".into())
        );
        assert_eq!(
            endpoint_urls("http://llm:8000/"),
            ("http://llm:8000/v1/chat/completions".into(), "http://llm:8000/v1/models".into())
        );
        assert_eq!(
            endpoint_urls("http://llm/v1"),
            ("http://llm/v1/chat/completions".into(), "http://llm/v1/models".into())
        );
    }
}
