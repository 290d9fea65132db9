//! The function's RTs: its own (`RT_URL`, credentials from `RT_SECRET_ID`) and any other
//! a route names (`--url`, `--secret`), each an [`HttpGateway`] built at cold start.
//!
//! When a proxy answers 401 or 403, the secret may have been rotated since cold start:
//! the pool reads it once more, rebuilds that RT's client, and posts again once. What
//! the second answer means is then the outcome table's business (401/403 is retried,
//! never dropped).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::http::{GatewayConfigError, HttpGateway, HttpGatewayConfig};
use super::MailGateway;
use crate::aws::secrets::{SecretError, SecretSource};
use crate::core::reply::{RtAnswer, TransportFailure};
use crate::core::request::{GatewayRequest, RtTarget};
use crate::spool::Spool;

/// An RT could not be set up at cold start.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Its connection settings are unusable.
    #[error(transparent)]
    Gateway(#[from] GatewayConfigError),
    /// Its secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Its REST 2 lookup could not be set up.
    #[error(transparent)]
    Lookup(#[from] crate::rt::lookup::LookupSetupError),
}

/// One RT: how to build its client, and the client in use.
#[derive(Debug)]
struct Slot {
    config: HttpGatewayConfig,
    secret_id: Option<String>,
    current: RwLock<Arc<HttpGateway>>,
}

impl Slot {
    async fn build(
        mut config: HttpGatewayConfig,
        secret_id: Option<String>,
        secrets: &impl SecretSource,
    ) -> Result<Self, PoolError> {
        if let Some(id) = &secret_id {
            config.credentials = secrets.credentials(id).await?;
        }
        let gateway = HttpGateway::new(&config)?;
        Ok(Self {
            config,
            secret_id,
            current: RwLock::new(Arc::new(gateway)),
        })
    }

    fn gateway(&self) -> Arc<HttpGateway> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the secret again and swaps in a client with what it holds now.
    async fn refresh(&self, secrets: &impl SecretSource) -> Result<Arc<HttpGateway>, String> {
        let id = self.secret_id.as_deref().ok_or("no secret")?;
        let mut config = self.config.clone();
        config.credentials = secrets.credentials(id).await.map_err(|e| e.to_string())?;
        let gateway = Arc::new(HttpGateway::new(&config).map_err(|e| e.to_string())?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = gateway.clone();
        Ok(gateway)
    }
}

/// Every RT the function posts to.
#[derive(Debug)]
pub struct GatewayPool<S> {
    secrets: S,
    own: Slot,
    others: BTreeMap<RtTarget, Slot>,
}

impl<S: SecretSource + Sync> GatewayPool<S> {
    /// Builds the function's own RT from `config` (credentials from `secret_id`) and one
    /// for each of `targets`, which share its TLS settings and timeout.
    pub async fn build(
        config: HttpGatewayConfig,
        secret_id: Option<String>,
        targets: Vec<RtTarget>,
        secrets: S,
    ) -> Result<Self, PoolError> {
        let mut others = BTreeMap::new();
        for target in targets {
            let mut their = config.clone();
            their.base_url = target.url.clone();
            their.credentials = Default::default();
            let slot = Slot::build(their, target.secret.clone(), &secrets).await?;
            others.insert(target, slot);
        }
        let own = Slot::build(config, secret_id, &secrets).await?;
        Ok(Self { secrets, own, others })
    }

    /// Each RT's settings as read at cold start (credentials included): the function's
    /// own first (`None`), then those routes name.
    pub fn configs(&self) -> Vec<(Option<&RtTarget>, &HttpGatewayConfig)> {
        std::iter::once((None, &self.own.config))
            .chain(self.others.iter().map(|(target, slot)| (Some(target), &slot.config)))
            .collect()
    }

    fn slot(&self, target: Option<&RtTarget>) -> Result<&Slot, TransportFailure> {
        match target {
            None => Ok(&self.own),
            Some(target) => self.others.get(target).ok_or_else(|| {
                // Routes and pool come from the same table at cold start: a bug if reached.
                TransportFailure::Connect(format!("no client was built for RT {}", target.url))
            }),
        }
    }
}

impl<S: SecretSource + Sync> MailGateway for GatewayPool<S> {
    async fn post(&self, request: &GatewayRequest, message: &Spool) -> Result<RtAnswer, TransportFailure> {
        let slot = self.slot(request.rt.as_ref())?;
        let answer = slot.gateway().post(request, message).await?;
        let refused = matches!(answer, RtAnswer::HttpError { status: 401 | 403, .. });
        if !refused || slot.secret_id.is_none() {
            return Ok(answer);
        }
        match slot.refresh(&self.secrets).await {
            Ok(gateway) => {
                tracing::info!(
                    rt = %crate::core::url_policy::redact(gateway.endpoint()),
                    "RT's proxy refused the credentials; read the secret again and posting once more"
                );
                gateway.post(request, message).await
            }
            Err(reason) => {
                tracing::warn!(
                    reason,
                    "RT's proxy refused the credentials and the secret could not be read again"
                );
                Ok(answer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::core::credentials::Credentials;
    use crate::core::url_policy::OtherHosts;
    use crate::rt::http::TlsPolicy;

    #[derive(Debug)]
    struct CountingSource(AtomicUsize);

    impl SecretSource for CountingSource {
        async fn credentials(&self, id: &str) -> Result<Credentials, SecretError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if id == "missing" {
                return Err(SecretError::NotAString { id: id.into() });
            }
            Ok(Credentials::from_json(r#"{"username": "u", "password": "p"}"#).unwrap())
        }
    }

    fn config(url: &str) -> HttpGatewayConfig {
        HttpGatewayConfig {
            base_url: url.into(),
            timeout: None,
            tls: TlsPolicy::SystemRoots,
            user_agent: "t".into(),
            credentials: Credentials::default(),
            other_hosts: OtherHosts::Only(vec![]),
        }
    }

    #[tokio::test]
    async fn each_rt_gets_its_own_secret_read_once_at_cold_start() {
        let other = RtTarget {
            url: "http://127.0.0.1:9/rt2".into(),
            secret: Some("rt2".into()),
        };
        let source = CountingSource(AtomicUsize::new(0));
        let pool = GatewayPool::build(
            config("http://127.0.0.1:9"),
            Some("own".into()),
            vec![other.clone()],
            source,
        )
        .await
        .unwrap();
        assert_eq!(pool.secrets.0.load(Ordering::SeqCst), 2);
        assert!(pool.own.config.credentials.basic.is_some());
        assert!(pool.others[&other].config.credentials.basic.is_some());
        assert!(pool.slot(Some(&other)).is_ok());
        let unknown = RtTarget {
            url: "http://elsewhere".into(),
            secret: None,
        };
        assert!(pool.slot(Some(&unknown)).is_err());
    }

    #[tokio::test]
    async fn an_unreadable_secret_stops_the_cold_start_naming_it() {
        let source = CountingSource(AtomicUsize::new(0));
        let err = GatewayPool::build(config("http://127.0.0.1:9"), Some("missing".into()), vec![], source)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("secret missing"), "{err}");
    }
}
