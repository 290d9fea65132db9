//! `--action` chains: RT splits the action on `-` and runs each piece in order
//! (`take-comment-resolve`). RT answers `temporary failure` for a piece that no mail
//! plugin handles, so a misrouted mail would be retried forever: configuration that
//! we control (the Lambda's routes) is checked here before any mail is posted.

use std::fmt;

/// Actions RT handles out of the box (`correspond`, `comment`) or through the stock
/// `Action::Take` / `Action::Resolve` mail plugins.
pub const KNOWN_ACTIONS: &[&str] = &["correspond", "comment", "take", "resolve"];

/// A validated chain of RT mail actions, e.g. `take-comment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionChain {
    steps: Vec<String>,
}

/// Why an action chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The chain was empty or had an empty piece (`comment--resolve`).
    #[error("action chain `{0}` has an empty step")]
    EmptyStep(String),
    /// A piece that no stock RT mail plugin handles.
    #[error("action `{step}` in `{chain}` is not one of {known}", known = KNOWN_ACTIONS.join(", "))]
    UnknownAction {
        /// The whole chain as written.
        chain: String,
        /// The piece RT would not handle.
        step: String,
    },
}

impl ActionChain {
    /// Parses `take-comment-resolve` into its steps. RT calls `Handle` + `ucfirst(step)`,
    /// so a step is taken as written or with a capital first letter (`comment`,
    /// `Comment`), never in other cases (`COMMENT` gets `temporary failure` from RT).
    pub fn parse(chain: &str) -> Result<Self, ActionError> {
        let written: Vec<&str> = chain.split('-').collect();
        if written.iter().any(|s| s.is_empty()) {
            return Err(ActionError::EmptyStep(chain.to_string()));
        }
        let mut steps = Vec::new();
        for step in written {
            let mut chars = step.chars();
            let lower_first: String = chars
                .next()
                .map(|c| c.to_ascii_lowercase())
                .into_iter()
                .chain(chars)
                .collect();
            if !KNOWN_ACTIONS.contains(&lower_first.as_str()) {
                return Err(ActionError::UnknownAction {
                    chain: chain.to_string(),
                    step: step.to_string(),
                });
            }
            steps.push(lower_first);
        }
        Ok(Self { steps })
    }

    /// The steps in the order RT runs them.
    pub fn steps(&self) -> &[String] {
        &self.steps
    }

    /// Whether the message text is recorded (RT ignores the text for `take`/`resolve` alone).
    pub fn records_text(&self) -> bool {
        self.steps.iter().any(|s| s == "correspond" || s == "comment")
    }
}

impl fmt::Display for ActionChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.steps.join("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_split_on_dash_in_order() {
        let chain = ActionChain::parse("Take-Comment-resolve").unwrap();
        assert_eq!(chain.steps(), ["take", "comment", "resolve"]);
        assert_eq!(chain.to_string(), "take-comment-resolve");
        assert!(chain.records_text());
    }

    #[test]
    fn take_alone_records_no_text() {
        assert!(!ActionChain::parse("take-resolve").unwrap().records_text());
    }

    #[test]
    fn empty_pieces_and_unknown_actions_are_refused() {
        assert_eq!(ActionChain::parse(""), Err(ActionError::EmptyStep(String::new())));
        assert!(matches!(
            ActionChain::parse("comment--resolve"),
            Err(ActionError::EmptyStep(_))
        ));
        let err = ActionChain::parse("correspond-close").unwrap_err();
        assert_eq!(
            err,
            ActionError::UnknownAction {
                chain: "correspond-close".into(),
                step: "close".into()
            }
        );
        assert!(err.to_string().contains("close"));
    }

    #[test]
    fn steps_are_taken_as_rt_spells_them() {
        assert_eq!(
            ActionChain::parse("Comment-resolve").unwrap().steps(),
            ["comment", "resolve"]
        );
        for wrong in ["COMMENT", "cOMMENT", "comment ", "écrire"] {
            assert!(ActionChain::parse(wrong).is_err(), "{wrong}");
        }
    }
}
