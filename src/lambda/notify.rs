//! Step 9 of a mail's delivery, once per mail: the notices for the routes this
//! invocation gave up. One operator digest listing them all, counted in the window of
//! its most pressing class ([`crate::core::outcome::GiveUpClass`]: what outsiders can
//! cause never uses up the notices about a broken route), and one sender notice when
//! any route asks for it and the sender may safely be told
//! ([`crate::core::outcome::sender_refusal`]); each only while its rate limits allow
//! ([`crate::core::rate_limit`]: per address, per domain and for all senders), counted
//! in small records written conditionally, so concurrent invocations can't pass a limit.

use crate::aws::records::DeliveryRecords;
use crate::aws::ses::Notifier;
use crate::core::headers::MailSummary;
use crate::core::notice::{operator_notice, sender_notice, GivenUpMail, GivenUpRoute, NoticeText};
use crate::core::outcome::{sender_refusal, GiveUpClass, Notice, SenderFacts};
use crate::core::rate_limit::{admit, normalize_address, operator_window, sender_windows, Admission, Window};
use crate::lambda::config::LambdaConfig;
use crate::lambda::invocation::{epoch_ms, settled_in_time, within, StoredMail, DEADLINE_MARGIN};
use crate::spool::Spool;

/// The notices of one mail: the configuration, the records (for the rate limits) and
/// the notifier.
pub struct Notices<'a, R, N> {
    /// Who is told, and from which address.
    pub config: &'a LambdaConfig,
    /// Where the rate-limit windows are counted.
    pub records: &'a R,
    /// Sends the notices.
    pub notifier: &'a N,
}

/// Sends `texts` one after another about mail `message_id`, logging each as `what`
/// sent (with its address) or not sent (with the error): a notice that fails is never
/// retried, and never fails the delivery.
pub async fn send_logged(notifier: &impl Notifier, message_id: &str, texts: Vec<NoticeText>, what: &str) {
    for text in texts {
        match notifier.send(&text).await {
            Ok(()) => tracing::info!(message_id, to = text.to, "{what} sent"),
            Err(error) => tracing::error!(message_id, error = %error, "{what} not sent"),
        }
    }
}

impl<R: DeliveryRecords, N: Notifier> Notices<'_, R, N> {
    /// Tells about the routes of `mail` given up by this invocation (each with who is
    /// to hear about it): one operator digest, at most one sender notice.
    pub async fn tell(&self, mail: &StoredMail<'_>, given_up: Vec<(GivenUpRoute, Notice)>) {
        let info = mail.info;
        let message_id = info.ses_id.as_str();
        let header = mail
            .spool
            .get()
            .map(Spool::summary)
            .cloned()
            .unwrap_or_else(MailSummary::default);
        let operator_routes: Vec<GivenUpRoute> = given_up
            .iter()
            .filter(|(_, notice)| notice.operator)
            .map(|(route, _)| route.clone())
            .collect();
        let sender_routes: Vec<GivenUpRoute> = given_up
            .iter()
            .filter(|(_, notice)| notice.sender)
            .map(|(route, _)| route.clone())
            .collect();
        let about = |routes: Vec<GivenUpRoute>| GivenUpMail {
            ses_message_id: info.ses_id.clone(),
            message_id: header.message_id.clone(),
            subject: header.subject.clone().or_else(|| info.subject.clone()),
            sender: info.sender.clone(),
            routes,
        };
        let mut notices = Vec::new();
        if let (false, Some(operator)) = (operator_routes.is_empty(), self.config.notices.operator.as_deref()) {
            let class = GiveUpClass::most_pressing(operator_routes.iter().map(|r| r.class));
            let (key, window) = operator_window(class);
            if self.take_slots(mail, &[(key.to_string(), window)]).await {
                notices.push(operator_notice(operator, &about(operator_routes)));
            } else {
                tracing::warn!(
                    message_id,
                    routes = operator_routes.len(),
                    class = ?class,
                    "operator digest rate-limited; the given-up routes are in this log only"
                );
            }
        }
        let facts = SenderFacts {
            envelope_sender: info.sender.clone(),
            from: header.from.clone(),
            spf_pass: info.spf_pass,
            dkim_pass: info.dkim_pass,
            dmarc: info.verdicts.dmarc.clone(),
            dkim_domains: header.dkim_domains.clone(),
            header: header.header,
            machine_generated: header.machine_generated,
        };
        if !sender_routes.is_empty() && self.config.notices.to_senders {
            let refused = sender_refusal(&facts);
            match normalize_address(&info.sender).filter(|_| refused.is_none()) {
                None => tracing::info!(
                    message_id,
                    reason = refused.unwrap_or("no sender address"),
                    header = header.header.describe(),
                    "sender not told"
                ),
                Some(normalized) => {
                    let windows = sender_windows(&normalized);
                    if self.take_slots(mail, &windows).await {
                        notices.push(sender_notice(&about(sender_routes)));
                    } else {
                        tracing::info!(message_id, sender = info.sender, "sender notice rate-limited");
                    }
                }
            }
        }
        send_logged(self.notifier, message_id, notices, "notice").await;
    }

    /// Takes one slot in each window, in order; false (send nothing) as soon as one is
    /// full or its store fails. Each window is one small record updated only if
    /// unchanged (`If-Match`, or `If-None-Match` for the first), re-read after a lost
    /// race: concurrent invocations can't both send past a limit. A slot taken in an
    /// earlier window is not given back when a later one is full: fewer notices, never
    /// more.
    async fn take_slots(&self, mail: &StoredMail<'_>, windows: &[(String, Window)]) -> bool {
        const RACES: usize = 5;
        // The given-up record is written already: use part of the margin rather than lose the notice.
        let limit = mail.time_left().map(|t| t + DEADLINE_MARGIN / 2);
        'windows: for (key, window) in windows {
            for _ in 0..RACES {
                let not_sent = |what: &str, error: String| {
                    tracing::warn!(
                        message_id = mail.info.ses_id,
                        key,
                        error,
                        "notice window {what}; not sent"
                    );
                    false
                };
                let found = match settled_in_time(within(limit, self.records.find_versioned(key)).await) {
                    Ok(found) => found,
                    Err(error) => return not_sent("unreadable", error),
                };
                let Admission::Send(text) = admit(found.as_ref().map(|(t, _)| t.as_str()), epoch_ms(), *window) else {
                    return false;
                };
                let written = match &found {
                    None => within(limit, self.records.create(key, &text)).await,
                    Some((_, version)) => within(limit, self.records.replace(key, &text, version)).await,
                };
                match settled_in_time(written) {
                    Ok(Some(_)) => continue 'windows,
                    // Another invocation wrote meanwhile: read its times and decide again.
                    Ok(None) => {}
                    Err(error) => return not_sent("not written", error),
                }
            }
            tracing::warn!(message_id = mail.info.ses_id, key, "notice window contended; not sent");
            return false;
        }
        true
    }
}
