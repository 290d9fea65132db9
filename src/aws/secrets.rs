//! RT's credentials from AWS Secrets Manager (`GetSecretValue`), behind the small
//! [`SecretSource`] trait. The secret is the JSON document of
//! [`crate::core::credentials`]; it is read at cold start and again when RT's proxy
//! answers 401/403 (the secret may have been rotated).

use std::future::Future;

use crate::core::credentials::{Credentials, CredentialsError};

/// A secret could not be read or used. Never holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager refused or failed (not found, access denied, unreachable).
    #[error("secret {id}: {reason}")]
    Unavailable {
        /// The secret's id (a name or ARN, not secret).
        id: String,
        /// The SDK's words.
        reason: String,
    },
    /// The secret holds no string (a binary secret).
    #[error("secret {id}: holds no SecretString (a JSON object is expected)")]
    NotAString {
        /// The secret's id.
        id: String,
    },
    /// The secret's JSON is not a credentials document.
    #[error("secret {id}: {error}")]
    Invalid {
        /// The secret's id.
        id: String,
        /// What is wrong (key names only).
        error: CredentialsError,
    },
}

/// Reads credentials by secret id.
pub trait SecretSource {
    /// Reads and checks the secret `id`.
    fn credentials(&self, id: &str) -> impl Future<Output = Result<Credentials, SecretError>> + Send;
}

/// Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// Reads through `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

impl SecretSource for SecretsManager {
    async fn credentials(&self, id: &str) -> Result<Credentials, SecretError> {
        let answer =
            self.client
                .get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| SecretError::Unavailable {
                    id: id.to_string(),
                    reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                })?;
        let text = answer
            .secret_string()
            .ok_or_else(|| SecretError::NotAString { id: id.to_string() })?;
        Credentials::from_json(text).map_err(|error| SecretError::Invalid {
            id: id.to_string(),
            error,
        })
    }
}
