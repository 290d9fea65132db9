//! The deployed function, read and invoked through the `aws` CLI's JSON output (not an
//! SDK crate: aws-sdk-lambda would add minutes to every build on small machines, for two
//! calls an operator's tool makes). The CLI takes the operator's own profile, region and
//! `AWS_ENDPOINT_URL` as usual. [`ToolSettings`] is where an operator's tool finds the
//! records: its flags, this machine's variables, then the deployed function's.

use std::collections::BTreeMap;
use std::process::Command;

use crate::aws::record_index::S3RecordIndex;
use crate::aws::records::DEFAULT_RECORDS_PREFIX;

/// Why the function could not be read or invoked.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The `aws` CLI is not installed or did not start.
    #[error("the aws CLI can't run ({0}); install it (pip install awscli) or pass the settings yourself")]
    NoCli(String),
    /// The CLI answered an error (no such function, no permission...).
    #[error("aws lambda {call} failed: {stderr}")]
    Failed {
        /// The call.
        call: &'static str,
        /// What the CLI said.
        stderr: String,
    },
    /// The CLI's answer is not the JSON expected.
    #[error("aws lambda {call}: unexpected answer: {0}", call = .1)]
    Unexpected(String, &'static str),
}

fn aws(args: &[&str], call: &'static str) -> Result<Vec<u8>, FunctionError> {
    let output = Command::new("aws")
        .args(args)
        .output()
        .map_err(|e| FunctionError::NoCli(e.to_string()))?;
    if !output.status.success() {
        return Err(FunctionError::Failed {
            call,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

/// The function's environment variables (`GetFunctionConfiguration`), as deployed.
pub fn deployed_environment(function: &str) -> Result<BTreeMap<String, String>, FunctionError> {
    let call = "get-function-configuration";
    let out = aws(&["lambda", call, "--function-name", function, "--output", "json"], call)?;
    let value: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| FunctionError::Unexpected(e.to_string(), call))?;
    Ok(environment_of(&value))
}

/// The variables in a `GetFunctionConfiguration` answer (none when it has none).
pub fn environment_of(configuration: &serde_json::Value) -> BTreeMap<String, String> {
    configuration["Environment"]["Variables"]
        .as_object()
        .map(|vars| {
            vars.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Invokes the function synchronously with `payload`; its answer (an error answer as
/// [`FunctionError::Failed`]).
pub fn invoke(function: &str, payload: &serde_json::Value) -> Result<serde_json::Value, FunctionError> {
    let call = "invoke";
    let dir = tempfile::tempdir().map_err(|e| FunctionError::NoCli(e.to_string()))?;
    let answer = dir.path().join("answer.json");
    let payload = payload.to_string();
    let answer_path = answer.to_string_lossy().into_owned();
    let meta = aws(
        &[
            "lambda",
            call,
            "--function-name",
            function,
            "--cli-binary-format",
            "raw-in-base64-out",
            "--cli-read-timeout",
            "900",
            "--payload",
            &payload,
            "--output",
            "json",
            &answer_path,
        ],
        call,
    )?;
    let text = std::fs::read_to_string(&answer).map_err(|e| FunctionError::Unexpected(e.to_string(), call))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| FunctionError::Unexpected(format!("{e}: {text}"), call))?;
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap_or_default();
    if meta.get("FunctionError").is_some() {
        return Err(FunctionError::Failed { call, stderr: text });
    }
    Ok(value)
}

/// Settings for a tool: the variable set on this machine, else the deployed function's.
pub fn overlay(deployed: &BTreeMap<String, String>, name: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| deployed.get(name).cloned())
}

/// Why a tool's settings are not complete.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The deployed function could not be read.
    #[error("reading the function's settings: {0}")]
    Function(#[from] FunctionError),
    /// Nothing names the bucket.
    #[error("give --bucket, MAIL_BUCKET or --function-name")]
    NoBucket,
}

/// The flags an operator tool finds the records by (shared by `rt-mailgate-trace` and
/// `rt-mailgate-held`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RecordsFlags {
    /// Take the settings (MAIL_BUCKET, RECORDS_PREFIX, the log group...) from this
    /// deployed function (through the aws CLI); a variable set here wins.
    #[arg(long, global = true)]
    pub function_name: Option<String>,
    /// The bucket (else MAIL_BUCKET).
    #[arg(long, global = true)]
    pub bucket: Option<String>,
    /// The records prefix (else RECORDS_PREFIX, else delivery-records/).
    #[arg(long, global = true)]
    pub records_prefix: Option<String>,
}

/// An operator tool's settings: every variable (the deployed function's, with this
/// machine's on top), and the records' bucket and prefix (a flag first).
#[derive(Debug, Clone, Default)]
pub struct ToolSettings {
    /// The function's variables, this machine's winning.
    pub vars: BTreeMap<String, String>,
    /// The mail bucket.
    pub bucket: String,
    /// The records prefix in it.
    pub prefix: String,
}

impl ToolSettings {
    /// Reads the deployed function the flags name (through the aws CLI) and this
    /// machine's variables, under the flags.
    pub fn read(flags: &RecordsFlags) -> Result<Self, SettingsError> {
        let deployed = match &flags.function_name {
            Some(name) => deployed_environment(name)?,
            None => BTreeMap::new(),
        };
        let bucket = flags
            .bucket
            .clone()
            .or_else(|| overlay(&deployed, "MAIL_BUCKET"))
            .ok_or(SettingsError::NoBucket)?;
        let prefix = flags
            .records_prefix
            .clone()
            .or_else(|| overlay(&deployed, "RECORDS_PREFIX"))
            .unwrap_or_else(|| DEFAULT_RECORDS_PREFIX.to_string());
        let mut vars = deployed;
        vars.extend(std::env::vars());
        Ok(Self { vars, bucket, prefix })
    }

    /// The records' index in the bucket, reached as the function reaches S3 (path-style
    /// where `S3_FORCE_PATH_STYLE` says so).
    pub fn record_index(&self, aws: &aws_config::SdkConfig) -> S3RecordIndex {
        let path_style = self.vars.get("S3_FORCE_PATH_STYLE").is_some_and(|v| v == "true");
        let s3 = aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(path_style)
            .build();
        S3RecordIndex::new(aws_sdk_s3::Client::from_conf(s3), self.bucket.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_read_from_the_configuration() {
        let configuration = serde_json::json!({
            "FunctionName": "f", "Environment": {"Variables": {"MAIL_BUCKET": "b", "ROUTES": "x: --queue y"}}
        });
        let vars = environment_of(&configuration);
        assert_eq!(vars.get("MAIL_BUCKET").map(String::as_str), Some("b"));
        assert!(environment_of(&serde_json::json!({"FunctionName": "f"})).is_empty());
    }
}
