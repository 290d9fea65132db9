//! Credentials for RT's mail gateway and RT's REST 2 API, read from one JSON document:
//! the Lambda's Secrets Manager secret (`RT_SECRET_ID`), or the CLI's `--secret-file`.
//!
//! ```json
//! {"header": "X-Mailgate-Token: ...", "username": "...", "password": "...",
//!  "client_cert": "-----BEGIN CERTIFICATE-----...", "client_key": "-----BEGIN PRIVATE KEY-----...",
//!  "rt_token": "...", "rt_username": "...", "rt_password": "...",
//!  "ca_pem": "-----BEGIN CERTIFICATE-----..."}
//! ```
//!
//! Every key is optional; any combination of the header, basic auth and the client
//! certificate may be used. `ca_pem` is not a secret but travels with the RT it belongs
//! to: the certificates (a private CA, or the server's own) to trust for that RT, read
//! as `--ca-file` reads its file. Values are held as [`SecretString`]s: their `Debug` prints
//! `[REDACTED]`, and no error here ever quotes a value (only key names), so neither a
//! log line nor an error message can leak one.

use secrecy::{ExposeSecret, SecretString};

/// Credentials for one RT.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// A request header the proxy in front of RT checks.
    pub header: Option<SecretHeader>,
    /// HTTP basic auth for the proxy in front of RT.
    pub basic: Option<BasicAuth>,
    /// A client certificate and key (PEM) for mTLS.
    pub client_identity: Option<ClientIdentity>,
    /// How to ask RT's REST 2 API whether it already holds a mail.
    pub rt_api: Option<RtApiAuth>,
    /// Certificates (PEM) to trust for this RT instead of the system's roots.
    pub ca_pem: Option<String>,
}

/// `Name: value`, sent with every post.
#[derive(Debug, Clone)]
pub struct SecretHeader {
    /// The header's name (not secret).
    pub name: String,
    /// Its value.
    pub value: SecretString,
}

/// HTTP basic auth.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    /// The user name (not secret, but never logged either).
    pub username: String,
    /// The password.
    pub password: SecretString,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The certificate (chain), PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: SecretString,
}

/// Credentials for RT's REST 2 API (a read-only RT user is enough).
#[derive(Debug, Clone)]
pub enum RtApiAuth {
    /// `Authorization: token ...`, an RT auth token.
    Token(SecretString),
    /// An RT user name and password (basic auth).
    Password {
        /// The RT user.
        username: String,
        /// Its password.
        password: SecretString,
    },
}

/// What is wrong with a credentials document. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Not a JSON object.
    #[error("the secret is not a JSON object of strings")]
    NotAnObject,
    /// A key we don't know (a typo would otherwise silently disable a credential).
    #[error("the secret has an unknown key `{0}` (known: header, username, password, client_cert, client_key, rt_token, rt_username, rt_password, ca_pem)")]
    UnknownKey(String),
    /// A key whose value is not a string.
    #[error("the secret's `{0}` is not a string")]
    NotAString(String),
    /// `header` is not `Name: value`.
    #[error("the secret's `header` must be `Name: value` with a valid header name and a non-empty value")]
    BadHeader,
    /// One of a pair without the other.
    #[error("the secret has `{0}` without `{1}`")]
    Unpaired(&'static str, &'static str),
    /// Both ways of reaching RT's REST 2 API.
    #[error("the secret has both `rt_token` and `rt_username`: choose one")]
    TwoRtApiLogins,
}

const KNOWN_KEYS: [&str; 9] = [
    "ca_pem",
    "header",
    "username",
    "password",
    "client_cert",
    "client_key",
    "rt_token",
    "rt_username",
    "rt_password",
];

impl Credentials {
    /// Parses a credentials document.
    pub fn from_json(text: &str) -> Result<Self, CredentialsError> {
        // Parse into a map of opaque values first: serde_json's own errors may quote input.
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|_| CredentialsError::NotAnObject)?;
        if let Some(unknown) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(CredentialsError::UnknownKey(unknown.clone()));
        }
        let get = |key: &str| -> Result<Option<String>, CredentialsError> {
            match map.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(CredentialsError::NotAString(key.to_string())),
            }
        };
        let pair = |a: &'static str, b: &'static str| -> Result<Option<(String, String)>, CredentialsError> {
            match (get(a)?, get(b)?) {
                (Some(x), Some(y)) => Ok(Some((x, y))),
                (None, None) => Ok(None),
                (Some(_), None) => Err(CredentialsError::Unpaired(a, b)),
                (None, Some(_)) => Err(CredentialsError::Unpaired(b, a)),
            }
        };
        let header = get("header")?.map(|h| parse_header(&h)).transpose()?;
        let basic = pair("username", "password")?.map(|(username, password)| BasicAuth {
            username,
            password: password.into(),
        });
        let client_identity = pair("client_cert", "client_key")?.map(|(cert_pem, key_pem)| ClientIdentity {
            cert_pem,
            key_pem: key_pem.into(),
        });
        let token = get("rt_token")?;
        let rt_login = pair("rt_username", "rt_password")?;
        let rt_api = match (token, rt_login) {
            (Some(_), Some(_)) => return Err(CredentialsError::TwoRtApiLogins),
            (Some(token), None) => Some(RtApiAuth::Token(token.into())),
            (None, Some((username, password))) => Some(RtApiAuth::Password {
                username,
                password: password.into(),
            }),
            (None, None) => None,
        };
        Ok(Self {
            header,
            basic,
            client_identity,
            rt_api,
            ca_pem: get("ca_pem")?,
        })
    }

    /// True when any credential goes with a post to the mail gateway.
    pub fn authenticates_posts(&self) -> bool {
        self.header.is_some() || self.basic.is_some() || self.client_identity.is_some()
    }

    /// Every secret value, for tests and leak checks (never for output).
    pub fn secret_values(&self) -> Vec<&str> {
        let mut values = Vec::new();
        if let Some(h) = &self.header {
            values.push(h.value.expose_secret());
        }
        if let Some(b) = &self.basic {
            values.push(b.password.expose_secret());
        }
        if let Some(c) = &self.client_identity {
            values.push(c.key_pem.expose_secret());
        }
        match &self.rt_api {
            Some(RtApiAuth::Token(t)) => values.push(t.expose_secret()),
            Some(RtApiAuth::Password { password, .. }) => values.push(password.expose_secret()),
            None => {}
        }
        values
    }
}

/// `Name: value` with an RFC 9110 token as the name.
fn parse_header(text: &str) -> Result<SecretHeader, CredentialsError> {
    let (name, value) = text.split_once(':').ok_or(CredentialsError::BadHeader)?;
    let (name, value) = (name.trim(), value.trim());
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let value_ok = !value.is_empty() && value.chars().all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic());
    if name.is_empty() || !name.chars().all(token_char) || !value_ok {
        return Err(CredentialsError::BadHeader);
    }
    Ok(SecretHeader {
        name: name.to_string(),
        value: value.to_string().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_any_combination_works() {
        let c = Credentials::from_json("{}").unwrap();
        assert!(!c.authenticates_posts() && c.rt_api.is_none());
        let c = Credentials::from_json(
            r#"{"header": "X-Mailgate-Token: s3cret", "username": "mail", "password": "pw",
                "client_cert": "CERT", "client_key": "KEY", "rt_token": "tok", "ca_pem": "CA"}"#,
        )
        .unwrap();
        assert_eq!(c.ca_pem.as_deref(), Some("CA"));
        let header = c.header.as_ref().unwrap();
        assert_eq!(
            (header.name.as_str(), header.value.expose_secret()),
            ("X-Mailgate-Token", "s3cret")
        );
        assert_eq!(c.basic.as_ref().unwrap().username, "mail");
        assert_eq!(c.client_identity.as_ref().unwrap().cert_pem, "CERT");
        assert!(matches!(c.rt_api, Some(RtApiAuth::Token(_))));
        let mut values = c.secret_values();
        values.sort();
        assert_eq!(values, ["KEY", "pw", "s3cret", "tok"]);
    }

    #[test]
    fn debug_output_never_shows_a_value() {
        let c = Credentials::from_json(
            r#"{"header": "X-T: hush-1", "username": "u", "password": "hush-2", "rt_username": "r", "rt_password": "hush-3"}"#,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hush"), "{shown}");
    }

    #[test]
    fn mistakes_are_named_without_their_values() {
        let cases = [
            ("not json hush", CredentialsError::NotAnObject),
            ("[\"hush\"]", CredentialsError::NotAnObject),
            (r#"{"pasword": "hush"}"#, CredentialsError::UnknownKey("pasword".into())),
            (r#"{"password": 5}"#, CredentialsError::NotAString("password".into())),
            (
                r#"{"password": "hush"}"#,
                CredentialsError::Unpaired("password", "username"),
            ),
            (
                r#"{"client_cert": "hush"}"#,
                CredentialsError::Unpaired("client_cert", "client_key"),
            ),
            (r#"{"header": "no colon hush"}"#, CredentialsError::BadHeader),
            (r#"{"header": "Bad Name: hush"}"#, CredentialsError::BadHeader),
            (r#"{"header": "X-T: hush\r\nX-Evil: 1"}"#, CredentialsError::BadHeader),
            (
                r#"{"rt_token": "hush", "rt_username": "u", "rt_password": "hush"}"#,
                CredentialsError::TwoRtApiLogins,
            ),
        ];
        for (text, expected) in cases {
            let err = Credentials::from_json(text).unwrap_err();
            assert_eq!(err, expected, "{text}");
            assert!(!err.to_string().contains("hush"), "{err}");
        }
    }
}
