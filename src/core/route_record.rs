//! One record per route of a mail: who is posting it, what the last attempt left
//! behind, and how it ended. The record is a small JSON object in the bucket
//! (`<records prefix><SES message id>/<fingerprint of the post>`), written only with
//! conditional writes (`If-None-Match: *` to create, `If-Match` to change), so it is at
//! once the lease, the "settled?" check and the delivery record:
//!
//! | record found                              | what an invocation does                                   |
//! |-------------------------------------------|-----------------------------------------------------------|
//! | none (its create succeeds)                | posts: one S3 request before fetching the mail            |
//! | `delivered` or `refused`                  | nothing: settled by an earlier invocation                 |
//! | `given-up`                                | nothing; a replay tries again, except a mail dropped on SES's verdicts (virus, DMARC reject, spam drop), which only `--post-screened-mail` posts |
//! | `held` (storm, loop, auto-reply: never posted) | nothing, in a replay too; only a release ([`Replaying::Release`]) takes it over and posts |
//! | `posting`, lease not expired              | leaves the route for a later retry (not lost, not posted) |
//! | `posting`, lease expired (holder died)    | takes it over; asks RT until RT may no longer be storing what the holder posted |
//! | `unsure` (RT may have taken the mail)     | takes it over; asks RT until `settle_until`, then posts   |
//! | `free` (RT surely did not get it)         | takes it over and posts                                   |
//! | unreadable                                | takes it over as `unsure`                                 |
//!
//! A lease is short ([`LEASE_TTL`]) and renewed every [`LEASE_RENEWAL`] while its holder
//! works, so Lambda's own retry (after about a minute) takes over a route whose holder
//! crashed, instead of finding it held until the holder's deadline.
//!
//! "RT may still be storing it" lasts [`RouteRecord::settle_until_ms`]: after an answer
//! that leaves it open whether RT took the mail, RT may still be working on it for up to
//! `RT_TIMEOUT` (3 × the slowest answer measured, see "Timeouts" in docs/operate.md). RT's
//! search sees only what RT has committed, so until then "not found" proves nothing.
//!
//! Records written by releases before this one hold a bare word (`delivered`,
//! `refused`, `found-in-rt`...): they read as settled.
//!
//! Beside its routes' records, a mail SES flagged (a verdict `FAIL`) has one record of
//! its own, [`MailVerdicts`] at `<records prefix>screening/<SES message id>`: SES's
//! verdicts from the receipt event, written by the first delivery before any route is
//! claimed, and whether or not any route takes the mail. A route that has no record
//! yet (unrouted at receipt, a route added since, an invocation that never reached the
//! claim) is screened on them when replayed by message id, whose verdicts are otherwise
//! unknown (see [`crate::lambda::screening`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::outcome::Verdicts;

/// How long a lease holds after its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(45);
/// How often a holder renews its lease while it posts or asks RT.
pub const LEASE_RENEWAL: Duration = Duration::from_secs(15);
/// Clock skew allowed between hosts before an unrenewed lease counts as expired.
pub const CLOCK_SKEW: Duration = Duration::from_secs(10);

/// Where a route stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteState {
    /// An invocation holds the lease and is posting (or asking RT).
    Posting,
    /// The last attempt ended where RT may have taken the mail (reset, 5xx, timeout).
    Unsure,
    /// The last attempt surely did not reach RT (refused connection, TLS, 401...).
    Free,
    /// RT took it (answered `ok`, or was found holding it).
    Delivered,
    /// RT refused it for good (`not ok`).
    Refused,
    /// Given up: a misroute, too large, or dropped on SES's verdicts.
    GivenUp,
    /// Held instead of posted (a storm, a loop, an auto-reply under `hold`): never
    /// posted; the record's `reason` is `"<cause>: <detail>"`
    /// ([`crate::core::hold::HoldCause`]). Settled until an operator releases it.
    Held,
}

impl RouteState {
    /// True once nothing more will happen to the route (outside a replay).
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Delivered | Self::Refused | Self::GivenUp | Self::Held)
    }

    /// The word used in the record and the logs.
    pub fn word(self) -> &'static str {
        match self {
            Self::Posting => "posting",
            Self::Unsure => "unsure",
            Self::Free => "free",
            Self::Delivered => "delivered",
            Self::Refused => "refused",
            Self::GivenUp => "given-up",
            Self::Held => "held",
        }
    }
}

/// What one route's record holds. Only ids, addresses and outcomes: never the mail's
/// content, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    /// Where the route stands.
    pub state: RouteState,
    /// The route entry (the routing table's key) that made this post.
    #[serde(default)]
    pub route: String,
    /// The envelope recipients that share the post.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The envelope sender.
    #[serde(default)]
    pub sender: String,
    /// The mail's `Message-ID` header as SES read it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The delivery id put in front of the mail (`X-RT-Mailgate-Delivery`).
    #[serde(default)]
    pub delivery_id: String,
    /// Who holds (or last held) the lease: the Lambda request id or process.
    #[serde(default)]
    pub holder: String,
    /// Until when (epoch ms) a `posting` lease holds unless renewed.
    #[serde(default)]
    pub lease_until_ms: u64,
    /// Until when (epoch ms) RT may still be storing an earlier attempt.
    #[serde(default)]
    pub settle_until_ms: u64,
    /// Posts made so far (attempts that reached the point of posting).
    #[serde(default)]
    pub posts: u32,
    /// The outcome table's case of the last attempt (e.g. `RtOk`, `ConnectionBroken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// Why it was given up, or what the last attempt met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RT's ticket, when known (RT's `ok` answer or the lookup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<u64>,
    /// RT's transaction, when the lookup found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<u64>,
    /// The first delivery's screening (see [`Screened`]).
    #[serde(default)]
    pub screened: Screened,
    /// The threading target checked with RT before the first post
    /// ([`crate::core::threading::ThreadTarget::to_text`]): a retry posts the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The auto-reply policy's decision, kept before the first post when it changes the
    /// post (`comment:<kind>`: posted as a comment): a retry posts (and asks RT about)
    /// the same post, whatever the policy says by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<String>,
    /// When the record was last written (epoch ms).
    #[serde(default)]
    pub updated_ms: u64,
}

/// What the first delivery's screening did with the mail, kept so a replay does the
/// same whatever today's policy or the replay's (possibly empty) verdicts say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Screened {
    /// Not screened yet, or passed as it is.
    #[default]
    Passed,
    /// Posted with these header lines in front (the spam tag).
    Tagged(String),
    /// Not posted: the outcome case (`VirusFound`, `SpamDropped`, `DmarcReject`).
    Dropped(String),
}

impl RouteRecord {
    /// The stored JSON.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored record. A bare word from an earlier release is a settled record;
    /// anything else unreadable is `None`.
    pub fn from_text(text: &str) -> Option<Self> {
        if let Ok(record) = serde_json::from_str::<Self>(text) {
            return Some(record);
        }
        let word = text.trim();
        let state = match word {
            "delivered" | "found-in-rt" => RouteState::Delivered,
            "refused" | "rejected" => RouteState::Refused,
            _ => return None,
        };
        Some(Self::legacy(state, word))
    }

    fn legacy(state: RouteState, word: &str) -> Self {
        Self {
            state,
            route: String::new(),
            recipients: Vec::new(),
            sender: String::new(),
            message_id: None,
            delivery_id: String::new(),
            holder: String::new(),
            lease_until_ms: 0,
            settle_until_ms: 0,
            posts: 0,
            case: Some(word.to_string()),
            reason: None,
            ticket: None,
            transaction: None,
            screened: Screened::Passed,
            thread: None,
            auto: None,
            updated_ms: 0,
        }
    }

    /// True while a `posting` lease holds at `now_ms`.
    pub fn lease_holds(&self, now_ms: u64) -> bool {
        self.state == RouteState::Posting && self.lease_until_ms.saturating_add(CLOCK_SKEW.as_millis() as u64) > now_ms
    }
}

/// What to do about a route, given its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// An earlier invocation settled it: nothing to do.
    Settled(RouteState),
    /// Dropped on SES's verdicts by the first delivery; a replay keeps it dropped.
    KeptDropped(String),
    /// Another invocation holds the lease: leave the route for a retry.
    Held {
        /// Its holder.
        holder: String,
        /// Until when its lease holds.
        until_ms: u64,
    },
    /// Take the record over (conditional on its version) and go on.
    TakeOver {
        /// RT must be asked before posting: an earlier attempt may have delivered.
        ask_rt: bool,
        /// Until when "not found" proves nothing (RT may still be storing it).
        settle_until_ms: u64,
    },
}

/// Whether a replay may post what the first delivery settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaying {
    /// A normal invocation: every settled record stands.
    No,
    /// A replay: given-up routes are tried again, except screened drops.
    Yes,
    /// A replay told to post screened drops too.
    ScreenedToo,
    /// A release of held mail: as [`Self::Yes`], and a `held` route is taken over and
    /// posted (once: two releases race for the record's version, and a route that is
    /// not held, e.g. delivered, stays as it is).
    Release,
}

/// The rule of the table above. `found` is the record's text; `rt_timeout` how long RT
/// may still be storing a mail after the last sign of an attempt.
pub fn claim(found: &str, now_ms: u64, replaying: Replaying, rt_timeout: Duration) -> Claim {
    let rt_timeout_ms = rt_timeout.as_millis() as u64;
    let Some(record) = RouteRecord::from_text(found) else {
        // Unreadable: RT may hold the mail, and may still be storing it.
        return Claim::TakeOver {
            ask_rt: true,
            settle_until_ms: now_ms.saturating_add(rt_timeout_ms),
        };
    };
    match record.state {
        RouteState::Delivered | RouteState::Refused => Claim::Settled(record.state),
        RouteState::Held if replaying != Replaying::Release => Claim::Settled(record.state),
        // A hold is decided before any post; were an earlier attempt ever to have posted
        // (`posts`), RT is asked first, as for any record that may have reached RT.
        RouteState::Held => Claim::TakeOver {
            ask_rt: record.posts > 0,
            settle_until_ms: record.settle_until_ms,
        },
        RouteState::GivenUp => match (replaying, &record.screened) {
            (Replaying::No, _) => Claim::Settled(record.state),
            (Replaying::Yes | Replaying::Release, Screened::Dropped(case)) => Claim::KeptDropped(case.clone()),
            // What was given up was never taken by RT (a misroute, 413, too large).
            _ => Claim::TakeOver {
                ask_rt: false,
                settle_until_ms: 0,
            },
        },
        RouteState::Posting if record.lease_holds(now_ms) => Claim::Held {
            holder: record.holder,
            until_ms: record.lease_until_ms,
        },
        // Its holder died while posting: RT may be storing what it posted, for as long
        // as RT may take after the holder's last renewal.
        RouteState::Posting => Claim::TakeOver {
            ask_rt: true,
            settle_until_ms: record.settle_until_ms.max(
                record
                    .lease_until_ms
                    .saturating_sub(LEASE_TTL.as_millis() as u64)
                    .saturating_add(rt_timeout_ms),
            ),
        },
        RouteState::Unsure => Claim::TakeOver {
            ask_rt: true,
            settle_until_ms: record.settle_until_ms,
        },
        RouteState::Free => Claim::TakeOver {
            ask_rt: false,
            settle_until_ms: 0,
        },
    }
}

/// SES's verdicts on one mail, as its receipt event gave them: the mail's own record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailVerdicts {
    /// virusVerdict.status.
    pub virus: String,
    /// spamVerdict.status.
    pub spam: String,
    /// dmarcVerdict.status.
    pub dmarc: String,
    /// receipt.dmarcPolicy, when DMARC failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc_policy: Option<String>,
    /// When the record was written (epoch ms).
    #[serde(default)]
    pub updated_ms: u64,
}

impl MailVerdicts {
    /// The key of a mail's record, under the records prefix (apart from the routes'
    /// records, which are `<SES message id>/<fingerprint>`).
    pub fn key(ses_id: &str) -> String {
        format!("screening/{ses_id}")
    }

    /// The record of these verdicts, written at `now_ms`.
    pub fn new(verdicts: &Verdicts, now_ms: u64) -> Self {
        Self {
            virus: verdicts.virus.clone(),
            spam: verdicts.spam.clone(),
            dmarc: verdicts.dmarc.clone(),
            dmarc_policy: verdicts.dmarc_policy.clone(),
            updated_ms: now_ms,
        }
    }

    /// The verdicts the record holds.
    pub fn verdicts(&self) -> Verdicts {
        Verdicts {
            virus: self.virus.clone(),
            spam: self.spam.clone(),
            dmarc: self.dmarc.clone(),
            dmarc_policy: self.dmarc_policy.clone(),
        }
    }

    /// The stored JSON.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored record (`None` when unreadable).
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// True when SES flagged the mail: some verdict a policy acts on is `FAIL`. Only
    /// such a mail gets a record: for any other, SES's header on the stored mail says
    /// the same (no `FAIL`), and the ordinary path keeps its S3 requests.
    pub fn flagged(verdicts: &Verdicts) -> bool {
        [&verdicts.virus, &verdicts.spam, &verdicts.dmarc]
            .into_iter()
            .any(|status| status.eq_ignore_ascii_case("FAIL"))
    }

    /// True when `verdicts` hold anything (an event's do; a replay by message id's don't).
    pub fn known(verdicts: &Verdicts) -> bool {
        [&verdicts.virus, &verdicts.spam, &verdicts.dmarc]
            .into_iter()
            .any(|status| !status.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mails_verdicts_round_trip_and_never_read_as_a_route() {
        let verdicts = Verdicts {
            virus: "PASS".into(),
            spam: "PASS".into(),
            dmarc: "FAIL".into(),
            dmarc_policy: Some("REJECT".into()),
        };
        let record = MailVerdicts::new(&verdicts, 5);
        assert_eq!(MailVerdicts::from_text(&record.to_text()).unwrap().verdicts(), verdicts);
        assert!(MailVerdicts::flagged(&verdicts));
        assert!(!MailVerdicts::flagged(&Verdicts {
            dmarc: "GRAY".into(),
            ..verdicts.clone()
        }));
        assert!(MailVerdicts::known(&verdicts) && !MailVerdicts::known(&Verdicts::default()));
        assert_eq!(RouteRecord::from_text(&record.to_text()), None, "not a route's record");
        assert_eq!(MailVerdicts::key("m1"), "screening/m1");
    }

    const RT_TIMEOUT: Duration = Duration::from_secs(600);

    fn record(state: RouteState) -> RouteRecord {
        let mut r = RouteRecord::legacy(state, "x");
        r.case = None;
        r.holder = "req-1".into();
        r
    }

    fn text(state: RouteState, edit: impl FnOnce(&mut RouteRecord)) -> String {
        let mut r = record(state);
        edit(&mut r);
        r.to_text()
    }

    #[test]
    fn settled_records_stand_outside_a_replay() {
        let now = 1_000_000;
        for state in [RouteState::Delivered, RouteState::Refused, RouteState::GivenUp] {
            assert_eq!(
                claim(&text(state, |_| {}), now, Replaying::No, RT_TIMEOUT),
                Claim::Settled(state)
            );
        }
        assert_eq!(
            claim(
                &text(RouteState::Delivered, |_| {}),
                now,
                Replaying::ScreenedToo,
                RT_TIMEOUT
            ),
            Claim::Settled(RouteState::Delivered),
            "a replay never posts what RT took"
        );
    }

    #[test]
    fn a_replay_retries_give_ups_but_keeps_screened_drops() {
        let now = 1_000_000;
        let misroute = text(RouteState::GivenUp, |r| r.case = Some("RtTemporaryFailure".into()));
        let virus = text(RouteState::GivenUp, |r| {
            r.screened = Screened::Dropped("VirusFound".into())
        });
        let retake = Claim::TakeOver {
            ask_rt: false,
            settle_until_ms: 0,
        };
        assert_eq!(claim(&misroute, now, Replaying::Yes, RT_TIMEOUT), retake);
        assert_eq!(
            claim(&virus, now, Replaying::Yes, RT_TIMEOUT),
            Claim::KeptDropped("VirusFound".into())
        );
        assert_eq!(claim(&virus, now, Replaying::ScreenedToo, RT_TIMEOUT), retake);
    }

    #[test]
    fn a_live_lease_holds_and_an_expired_one_is_taken_over_carefully() {
        let now = 1_000_000;
        let skew = CLOCK_SKEW.as_millis() as u64;
        let live = text(RouteState::Posting, |r| r.lease_until_ms = now + 1);
        assert_eq!(
            claim(&live, now, Replaying::No, RT_TIMEOUT),
            Claim::Held {
                holder: "req-1".into(),
                until_ms: now + 1
            }
        );
        let within_skew = text(RouteState::Posting, |r| r.lease_until_ms = now - skew + 1);
        assert!(matches!(
            claim(&within_skew, now, Replaying::No, RT_TIMEOUT),
            Claim::Held { .. }
        ));
        // Renewed last at `until - TTL`: RT may store what it posted until then + RT_TIMEOUT.
        let until = now - skew;
        let dead = text(RouteState::Posting, |r| r.lease_until_ms = until);
        assert_eq!(
            claim(&dead, now, Replaying::No, RT_TIMEOUT),
            Claim::TakeOver {
                ask_rt: true,
                settle_until_ms: until - LEASE_TTL.as_millis() as u64 + RT_TIMEOUT.as_millis() as u64
            }
        );
    }

    #[test]
    fn times_at_the_end_of_the_clock_do_not_overflow() {
        // Found by the fuzz target `route_record`: a stored (or read) time near u64::MAX
        // overflowed the lease and settle arithmetic.
        let forever = text(RouteState::Posting, |r| r.lease_until_ms = u64::MAX);
        assert!(matches!(
            claim(&forever, 1_000_000, Replaying::No, RT_TIMEOUT),
            Claim::Held { until_ms: u64::MAX, .. }
        ));
        assert_eq!(
            claim(&forever, u64::MAX, Replaying::No, RT_TIMEOUT),
            Claim::TakeOver {
                ask_rt: true,
                settle_until_ms: u64::MAX
            }
        );
        assert_eq!(
            claim("unreadable", u64::MAX, Replaying::No, RT_TIMEOUT),
            Claim::TakeOver {
                ask_rt: true,
                settle_until_ms: u64::MAX
            }
        );
    }

    #[test]
    fn unsure_keeps_its_settle_time_and_free_posts_at_once() {
        let now = 1_000_000;
        let unsure = text(RouteState::Unsure, |r| r.settle_until_ms = now + 5);
        assert_eq!(
            claim(&unsure, now, Replaying::No, RT_TIMEOUT),
            Claim::TakeOver {
                ask_rt: true,
                settle_until_ms: now + 5
            }
        );
        assert_eq!(
            claim(&text(RouteState::Free, |_| {}), now, Replaying::No, RT_TIMEOUT),
            Claim::TakeOver {
                ask_rt: false,
                settle_until_ms: 0
            }
        );
        assert_eq!(
            claim("garbage", now, Replaying::No, RT_TIMEOUT),
            Claim::TakeOver {
                ask_rt: true,
                settle_until_ms: now + RT_TIMEOUT.as_millis() as u64
            }
        );
    }

    #[test]
    fn a_held_route_is_posted_only_by_a_release_and_only_once() {
        let now = 1_000_000;
        let held = text(RouteState::Held, |r| {
            r.reason = Some("storm-sender: 16 in 10 min".into())
        });
        for replaying in [Replaying::No, Replaying::Yes, Replaying::ScreenedToo] {
            assert_eq!(
                claim(&held, now, replaying, RT_TIMEOUT),
                Claim::Settled(RouteState::Held),
                "{replaying:?} leaves held mail held"
            );
        }
        assert_eq!(
            claim(&held, now, Replaying::Release, RT_TIMEOUT),
            Claim::TakeOver {
                ask_rt: false,
                settle_until_ms: 0
            },
            "never posted: the release posts at once"
        );
        // Released once: the record says `posting` (the release's lease) or `delivered`,
        // so a second release (or the first delivery's retry) does not post again.
        let releasing = text(RouteState::Posting, |r| r.lease_until_ms = now + 1);
        assert!(matches!(
            claim(&releasing, now, Replaying::Release, RT_TIMEOUT),
            Claim::Held { .. }
        ));
        for state in [RouteState::Delivered, RouteState::Refused] {
            assert_eq!(
                claim(&text(state, |_| {}), now, Replaying::Release, RT_TIMEOUT),
                Claim::Settled(state),
                "a release of a route that is not held does nothing"
            );
        }
        // A release keeps the screening, as a replay does.
        let virus = text(RouteState::GivenUp, |r| {
            r.screened = Screened::Dropped("VirusFound".into())
        });
        assert_eq!(
            claim(&virus, now, Replaying::Release, RT_TIMEOUT),
            Claim::KeptDropped("VirusFound".into())
        );
        // Were a held record ever to have been posted, RT is asked first.
        let posted = text(RouteState::Held, |r| {
            r.posts = 1;
            r.settle_until_ms = now + 5;
        });
        assert_eq!(
            claim(&posted, now, Replaying::Release, RT_TIMEOUT),
            Claim::TakeOver {
                ask_rt: true,
                settle_until_ms: now + 5
            }
        );
        assert!(RouteState::Held.is_settled());
        assert_eq!(serde_json::to_string(&RouteState::Held).unwrap(), "\"held\"");
        assert_eq!(RouteState::Held.word(), "held");
    }

    #[test]
    fn records_of_earlier_releases_read_as_settled() {
        for (word, state) in [
            ("delivered", RouteState::Delivered),
            ("found-in-rt", RouteState::Delivered),
            ("refused", RouteState::Refused),
        ] {
            assert_eq!(claim(word, 0, Replaying::Yes, RT_TIMEOUT), Claim::Settled(state));
        }
    }

    #[test]
    fn text_round_trips() {
        let mut r = record(RouteState::Unsure);
        r.screened = Screened::Tagged("X-RT-Mailgate-Spam: FAIL\n".into());
        r.ticket = Some(7);
        assert_eq!(RouteRecord::from_text(&r.to_text()), Some(r));
    }
}
