//! The credentials document (the Secrets Manager secret, the CLI's `--secret-file`):
//! any text gives credentials or a clear error; never a panic, and neither the error nor
//! the credentials' Debug form shows a secret value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::credentials::Credentials;

const SECRET_KEYS: [&str; 5] = ["password", "client_key", "rt_token", "rt_password", "header"];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Every secret value the document holds, as JSON strings under a secret key (for the
    // header, the part after its colon); long enough not to occur by chance.
    let mut secrets: Vec<String> = Vec::new();
    let mut public = String::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text) {
        for (key, value) in &map {
            let Some(value) = value.as_str() else { continue };
            match key.as_str() {
                "header" => {
                    if let Some((name, secret)) = value.split_once(':') {
                        public.push_str(name);
                        secrets.push(secret.trim().to_string());
                    }
                }
                k if SECRET_KEYS.contains(&k) => secrets.push(value.to_string()),
                _ => public.push_str(value),
            }
            public.push_str(key);
        }
    }
    let secrets: Vec<String> = secrets
        .into_iter()
        .filter(|s| s.len() >= 12 && !public.contains(s.as_str()))
        .collect();
    let shown = match Credentials::from_json(&text) {
        Ok(credentials) => {
            for value in credentials.secret_values() {
                assert!(!value.trim().is_empty(), "an empty secret was kept");
            }
            format!("{credentials:?}")
        }
        Err(error) => format!("{error} {error:?}"),
    };
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "a secret value was shown");
    }
});
