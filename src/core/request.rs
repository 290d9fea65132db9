//! What is posted to RT's mail gateway (`POST {url}/REST/1.0/NoAuth/mail-gateway`):
//! the `queue`, `action` and `ticket` form fields and the header put in front of the
//! message. [`MailgateArgs::resolve`] is the one place that turns rt-mailgate's
//! arguments plus an extension into a request, for the CLI and the Lambda alike.

use crate::core::action::ActionChain;
use crate::core::extension::{extension_header, ExtensionField};

/// The routing arguments of one `rt-mailgate` invocation (an aliases line, or a route).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailgateArgs {
    /// `--queue`: posted only when given (RT then defaults to queue 1).
    pub queue: Option<Vec<u8>>,
    /// `--action`: posted only when given (RT then defaults to `correspond`).
    pub action: Option<Vec<u8>>,
    /// `--extension`: the word as given (`queue`, `action`, `ticket`, any case).
    pub extension: Option<Vec<u8>>,
}

/// One post to RT's mail gateway, minus the message bytes. Field values are bytes: the
/// Perl client posts its arguments and `$EXTENSION` as the shell gave them, UTF-8 or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayRequest {
    /// The `queue` field.
    pub queue: Option<Vec<u8>>,
    /// The `action` field.
    pub action: Option<Vec<u8>>,
    /// The `ticket` field.
    pub ticket: Option<Vec<u8>>,
    /// The `X-RT-Mail-Extension` header line to put in front of the message.
    pub extension_header: Option<Vec<u8>>,
    /// Further header lines to put in front (after the extension header), e.g. a spam tag.
    pub extra_headers: Vec<u8>,
    /// Which RT gets the post when not the function's own (`--url`/`--secret` in a route).
    pub rt: Option<RtTarget>,
}

/// RT's action when none is posted.
const DEFAULT_ACTION: &str = "correspond";
/// RT's queue when none is posted (queue id 1, `General` in a new RT).
const DEFAULT_QUEUE: &[u8] = b"1";

/// An RT instance other than the default: one function may serve several.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RtTarget {
    /// RT's base URL, without credentials (those live in the secret).
    pub url: String,
    /// The Secrets Manager id of its credentials, if it needs any.
    pub secret: Option<String>,
}

/// A resolved request and the warning, if any, that the Perl client would print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What to post.
    pub request: GatewayRequest,
    /// A misconfiguration worth telling the admin about; the mail still goes.
    pub warning: Option<String>,
}

impl MailgateArgs {
    /// Applies an extension (`$EXTENSION`, or a sub-address) to these arguments.
    /// An empty extension counts as none.
    pub fn resolve(&self, extension: Option<&[u8]>) -> Resolved {
        let extension = extension.filter(|e| !e.is_empty());
        let mut request = GatewayRequest {
            queue: self.queue.clone(),
            action: self.action.clone(),
            ticket: None,
            extension_header: extension.map(extension_header),
            extra_headers: Vec::new(),
            rt: None,
        };
        let mut warning = None;
        match (self.extension.as_deref().map(ExtensionField::from_bytes), extension) {
            (Some(Ok(field)), Some(value)) => {
                let value = Some(value.to_vec());
                match field {
                    ExtensionField::Queue => request.queue = value,
                    ExtensionField::Action => request.action = value,
                    ExtensionField::Ticket => request.ticket = value,
                }
            }
            (Some(Err(_)), Some(_)) => {
                warning = Some(
                    "Value of the --extension argument is not action, queue or ticket, \
                     but environment variable EXTENSION is also defined. The former is ignored."
                        .to_string(),
                );
            }
            (Some(Err(bad)), None) => warning = Some(format!("{bad}; it is ignored.")),
            _ => {}
        }
        Resolved { request, warning }
    }
}

impl GatewayRequest {
    /// The text form fields, in a fixed order (the Perl client's order varies by run).
    pub fn form_fields(&self) -> Vec<(&'static str, &[u8])> {
        [
            ("queue", &self.queue),
            ("action", &self.action),
            ("ticket", &self.ticket),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }

    /// The form fields as text, for logs and messages (bytes that are not UTF-8 shown as
    /// U+FFFD; what is posted stays bytes).
    pub fn form_fields_text(&self) -> Vec<(&'static str, String)> {
        self.form_fields()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(value).into_owned()))
            .collect()
    }

    /// This post as RT reads it, in one spelling: what makes a post's identity
    /// ([`Self::fingerprint`]), so that a route written another way between two attempts
    /// (RT's default written out or not, a case RT ignores) is the same post, never a
    /// second one. What RT tells apart stays apart: another queue, ticket, extension, or
    /// RT is another post.
    ///
    /// - `action`: RT splits it on `-` and calls `Handle` + `ucfirst(step)`, so
    ///   `Correspond` is `correspond`; a chain is written as [`ActionChain`] writes it,
    ///   and `correspond` alone, RT's default, is the same as no action (an action this
    ///   gateway does not know, e.g. chosen by a sub-address, stays as written);
    /// - `queue`: RT loads a queue by name without regard to case (`RT::Record::LoadByCols`
    ///   on every database), so ASCII letters are lower-cased (other letters are left:
    ///   not every database folds them); `1`, RT's default, is the same as no queue;
    /// - the order of a route's options never mattered (the fields are named);
    /// - the RT's URL is already in one form ([`crate::core::route::rt_base_url`]), and
    ///   its secret is not part of the post.
    pub fn canonical(&self) -> GatewayRequest {
        let action = self.action.as_ref().and_then(|action| {
            let written = std::str::from_utf8(action)
                .ok()
                .and_then(|a| ActionChain::parse(a).ok());
            match written.map(|chain| chain.to_string()) {
                Some(chain) if chain == DEFAULT_ACTION => None,
                Some(chain) => Some(chain.into_bytes()),
                None => Some(action.clone()),
            }
        });
        let queue = self
            .queue
            .as_ref()
            .map(|queue| queue.to_ascii_lowercase())
            .filter(|queue| queue != DEFAULT_QUEUE);
        GatewayRequest {
            queue,
            action,
            ticket: self.ticket.clone(),
            extension_header: self.extension_header.clone(),
            extra_headers: self.extra_headers.clone(),
            rt: self.rt.as_ref().map(|rt| RtTarget {
                url: rt.url.clone(),
                secret: None,
            }),
        }
    }

    /// True when both make the same post as RT reads it (see [`Self::canonical`]).
    pub fn same_post(&self, other: &GatewayRequest) -> bool {
        self.canonical() == other.canonical()
    }

    /// A stable fingerprint of this post as RT reads it ([`Self::canonical`]: fields and
    /// header), naming its delivery record and its delivery id: two invocations for the
    /// same mail and route get the same one, however the route spells it.
    pub fn fingerprint(&self) -> String {
        let canonical = self.canonical();
        // FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes.iter().chain(&[0xff]) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (name, value) in canonical.form_fields() {
            feed(name.as_bytes());
            feed(value);
        }
        feed(&canonical.message_prefix());
        // Another RT is another post; the secret is not part of it (rotating or renaming
        // it must not make a delivered mail look new).
        if let Some(rt) = &canonical.rt {
            feed(b"rt");
            feed(rt.url.as_bytes());
        }
        format!("{hash:016x}")
    }

    /// The bytes put in front of the message (empty without an extension or tag).
    pub fn message_prefix(&self) -> Vec<u8> {
        let mut prefix = self.extension_header.clone().unwrap_or_default();
        prefix.extend_from_slice(&self.extra_headers);
        prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(queue: Option<&str>, action: Option<&str>, extension: Option<&str>) -> MailgateArgs {
        MailgateArgs {
            queue: queue.map(|v| v.as_bytes().to_vec()),
            action: action.map(|v| v.as_bytes().to_vec()),
            extension: extension.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn fields(request: &GatewayRequest) -> Vec<(&'static str, String)> {
        request.form_fields_text()
    }

    #[test]
    fn only_given_fields_are_posted() {
        let r = args(None, None, None).resolve(None);
        assert!(r.request.form_fields().is_empty());
        assert_eq!(r.request.message_prefix(), b"");
        let r = args(Some("bugs"), Some("comment"), None).resolve(None);
        assert_eq!(
            fields(&r.request),
            [("queue", "bugs".to_string()), ("action", "comment".to_string())]
        );
    }

    #[test]
    fn extension_feeds_the_named_field_and_the_header() {
        let r = args(Some("bugs"), None, Some("Ticket")).resolve(Some(b"42"));
        assert_eq!(
            fields(&r.request),
            [("queue", "bugs".to_string()), ("ticket", "42".to_string())]
        );
        assert_eq!(r.request.message_prefix(), b"X-RT-Mail-Extension: 42\n");
        assert_eq!(r.warning, None);

        let r = args(Some("general"), None, Some("queue")).resolve(Some(b"bugs"));
        assert_eq!(fields(&r.request), [("queue", "bugs".to_string())]);
        let r = args(None, Some("correspond"), Some("action")).resolve(Some(b"comment"));
        assert_eq!(fields(&r.request), [("action", "comment".to_string())]);
    }

    #[test]
    fn extension_without_option_adds_only_the_header() {
        let r = args(Some("bugs"), None, None).resolve(Some(b"urgent"));
        assert_eq!(fields(&r.request), [("queue", "bugs".to_string())]);
        assert_eq!(r.request.message_prefix(), b"X-RT-Mail-Extension: urgent\n");
    }

    #[test]
    fn option_without_extension_keeps_the_given_value_and_adds_no_header() {
        // Perl would write the word `queue` as the header value here; we write none.
        let r = args(Some("bugs"), None, Some("queue")).resolve(None);
        assert_eq!(fields(&r.request), [("queue", "bugs".to_string())]);
        assert_eq!(r.request.extension_header, None);
        let r = args(None, None, Some("ticket")).resolve(Some(b""));
        assert!(r.request.form_fields().is_empty());
        assert_eq!(r.request.extension_header, None);
    }

    #[test]
    fn fingerprints_tell_posts_apart_and_are_stable() {
        let a = args(Some("bugs"), None, Some("ticket")).resolve(Some(b"1")).request;
        let b = args(Some("bugs"), None, Some("ticket")).resolve(Some(b"2")).request;
        let c = args(Some("bugs"), None, None).resolve(Some(b"1")).request;
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut d = a.clone();
        d.rt = Some(RtTarget {
            url: "https://rt2.example".into(),
            secret: Some("s1".into()),
        });
        assert_ne!(a.fingerprint(), d.fingerprint());
        let mut e = d.clone();
        e.rt.as_mut().unwrap().secret = Some("s2".into());
        assert_eq!(d.fingerprint(), e.fingerprint(), "the secret is not part of the post");
        // Pinned: a record written by one release must be found by the next.
        assert_eq!(
            args(None, None, None).resolve(None).request.fingerprint(),
            "af64724c8602eb6e"
        );
    }

    #[test]
    fn equivalent_spellings_are_one_post() {
        let fingerprint =
            |queue: Option<&str>, action: Option<&str>| args(queue, action, None).resolve(None).request.fingerprint();
        let support = fingerprint(Some("support"), None);
        for (queue, action) in [
            (Some("support"), Some("correspond")),
            (Some("Support"), Some("Correspond")),
            (Some("SUPPORT"), None),
        ] {
            assert_eq!(fingerprint(queue, action), support, "{queue:?} {action:?}");
        }
        // RT's default queue written out, and a chain as RT spells it.
        assert_eq!(fingerprint(Some("1"), Some("correspond")), fingerprint(None, None));
        assert_eq!(
            fingerprint(Some("bugs"), Some("Take-Comment")),
            fingerprint(Some("bugs"), Some("take-comment"))
        );
        // A real change is another post: another queue, action, or RT.
        assert_ne!(fingerprint(Some("sales"), None), support);
        assert_ne!(fingerprint(Some("support"), Some("comment")), support);
        assert_ne!(fingerprint(Some("support"), Some("correspond-comment")), support);
        assert_ne!(fingerprint(Some("supp0rt"), None), support);
        // RT would refuse `COMMENT` (`HandleCOMMENT`): not the same post as `comment`.
        assert_ne!(
            fingerprint(Some("support"), Some("COMMENT")),
            fingerprint(Some("support"), Some("comment"))
        );
        let mut other_rt = args(Some("support"), None, None).resolve(None).request;
        other_rt.rt = Some(RtTarget {
            url: "https://rt2.example".into(),
            secret: None,
        });
        assert_ne!(other_rt.fingerprint(), support);
        // Pinned: `--queue support` keeps the identity it had before spellings were folded.
        assert_eq!(support, "30b9bee864c86afe");
    }

    #[test]
    fn only_ascii_letters_are_folded_in_a_queue_name() {
        let request = |queue: &[u8]| GatewayRequest {
            queue: Some(queue.to_vec()),
            ..GatewayRequest::default()
        };
        assert_eq!(request(b"Caf\xc3\xa9").canonical().queue, Some(b"caf\xc3\xa9".to_vec()));
        assert_ne!(
            request("café".as_bytes()).fingerprint(),
            request("cafÉ".as_bytes()).fingerprint()
        );
        assert!(request(b"Support").same_post(&request(b"support")));
        // What is posted stays as written; only the identity is folded.
        assert_eq!(request(b"Support").form_fields(), [("queue", &b"Support"[..])]);
    }

    #[test]
    fn zero_is_a_real_extension() {
        let r = args(None, None, Some("ticket")).resolve(Some(b"0"));
        assert_eq!(fields(&r.request), [("ticket", "0".to_string())]);
    }

    #[test]
    fn a_bad_extension_word_warns_and_is_ignored() {
        let r = args(Some("bugs"), None, Some("owner")).resolve(Some(b"7"));
        assert_eq!(fields(&r.request), [("queue", "bugs".to_string())]);
        assert_eq!(r.request.message_prefix(), b"X-RT-Mail-Extension: 7\n");
        assert!(r.warning.unwrap().contains("The former is ignored"));
        let r = args(None, None, Some("owner")).resolve(None);
        assert!(r.warning.unwrap().contains("`owner`"));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_posted_as_given() {
        let args = MailgateArgs {
            queue: Some(b"caf\xe9".to_vec()),
            action: None,
            extension: Some(b"ticket".to_vec()),
        };
        let r = args.resolve(Some(b"4\xff2"));
        assert_eq!(
            r.request.form_fields(),
            [("queue", &b"caf\xe9"[..]), ("ticket", &b"4\xff2"[..])]
        );
        assert_eq!(r.request.message_prefix(), b"X-RT-Mail-Extension: 4\xff2\n");
    }
}
