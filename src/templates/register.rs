//! The releases a deployment has loaded, anchored in its database (table `template_release`).
//!
//! `approved.lock` has no key: its chain proves that nothing changed since the last link was
//! computed, not who computed it. Whoever can commit can change an approved version, put the
//! new hash in its entry and recompute every link; only the repository's history tells, and a
//! shallow clone or an archive has none. So every `herald run` anchors the releases it loads
//! outside the repository: a release it has not seen yet is inserted (its content hash and
//! approver, the time it was first seen), a withdrawal recorded; a lock that disagrees with a
//! release anchored before (another content or approver, a withdrawal gone while the release
//! is still there) refuses the start, naming each version and what changed.
//!
//! A release the lock does not have (yet) is no disagreement: an older checkout (a rollback, an
//! instance of the previous deployment restarting) lacks the versions released after it, and
//! their folders with them; a version whose folder is there but whose release is not is refused
//! by the load already ("not recorded"). What never passes is a known version that comes back
//! changed, or comes back in force after its withdrawal.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgPool;

use super::releases::short as short_hash;
use super::{Release, TemplateRegistry, Withdrawal, LOCK_FILE};

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("template releases: database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{} release(s) in {LOCK_FILE} disagree with the releases this deployment's database anchored (table template_release) when a herald loaded them, as a rewritten lock would; restore the lock as it was released (a changed version is a new version):\n  {}", .0.len(), .0.join("\n  "))]
    Disagrees(Vec<String>),
}

impl RegisterError {
    /// Whether the database was out of reach (worth waiting for at start-up), rather than
    /// refusing.
    pub fn is_unreachable(&self) -> bool {
        match self {
            RegisterError::Database(
                sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut,
            ) => true,
            // Starting up, shutting down, crash recovery (class 57P: operator intervention).
            RegisterError::Database(sqlx::Error::Database(e)) => {
                e.code().is_some_and(|code| code.starts_with("57P"))
            }
            _ => false,
        }
    }
}

/// What an anchoring added: the ids first seen released, and first seen withdrawn.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Anchored {
    pub released: Vec<String>,
    pub withdrawn: Vec<String>,
}

/// The table of anchored releases, on the ledger's database.
#[derive(Clone)]
pub struct ReleaseRegister {
    pool: PgPool,
}

/// A release as the database anchored it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Known {
    id: String,
    content_hash: String,
    approved_by: String,
    first_seen_at: DateTime<Utc>,
    withdrawn_reason: Option<String>,
    withdrawn_by: Option<String>,
    withdrawn_at: Option<DateTime<Utc>>,
}

impl ReleaseRegister {
    pub fn new(pool: PgPool) -> ReleaseRegister {
        ReleaseRegister { pool }
    }

    /// Anchors the releases and withdrawals of `registry` (loaded, its record intact) in one
    /// transaction, after comparing them with those anchored before: any disagreement refuses
    /// the whole (nothing is written). Anchorings of several heralds starting together run one
    /// after the other.
    pub async fn anchor(&self, registry: &TemplateRegistry) -> Result<Anchored, RegisterError> {
        let releases = registry.releases();
        let withdrawals = registry.withdrawals();
        let mut tx = self.pool.begin().await?;
        // Conflicts with itself, not with readers: two starts never both see a release missing.
        sqlx::query("LOCK TABLE template_release IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let known: Vec<Known> = sqlx::query_as(
            "SELECT id, content_hash, approved_by, first_seen_at, withdrawn_reason, withdrawn_by, withdrawn_at FROM template_release ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut problems = disagreements(&known, releases, &withdrawals);
        let mut times = Vec::new();
        for withdrawal in &withdrawals {
            match DateTime::parse_from_rfc3339(&withdrawal.at) {
                Ok(at) => times.push(at.with_timezone(&Utc)),
                Err(e) => problems.push(format!(
                    "{}: the withdrawal's time '{}' does not read: {e}",
                    withdrawal.id, withdrawal.at
                )),
            }
        }
        if !problems.is_empty() {
            return Err(RegisterError::Disagrees(problems));
        }
        let mut released: Vec<String> = sqlx::query_scalar(
            "INSERT INTO template_release (id, content_hash, approved_by)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
        )
        .bind(releases.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
        .bind(
            releases
                .iter()
                .map(|r| r.content.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            releases
                .iter()
                .map(|r| r.approved_by.clone())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut withdrawn: Vec<String> = sqlx::query_scalar(
            "UPDATE template_release t
             SET withdrawn_reason = w.reason, withdrawn_by = w.by, withdrawn_at = w.at
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS w(id, reason, by, at)
             WHERE t.id = w.id AND t.withdrawn_at IS NULL
             RETURNING t.id",
        )
        .bind(withdrawals.iter().map(|w| w.id.clone()).collect::<Vec<_>>())
        .bind(
            withdrawals
                .iter()
                .map(|w| w.reason.clone())
                .collect::<Vec<_>>(),
        )
        .bind(withdrawals.iter().map(|w| w.by.clone()).collect::<Vec<_>>())
        .bind(times)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // In the record's order (RETURNING has none).
        released.sort_by_key(|id| releases.iter().position(|r| r.id == *id));
        withdrawn.sort_by_key(|id| withdrawals.iter().position(|w| w.id == *id));
        Ok(Anchored {
            released,
            withdrawn,
        })
    }
}

fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the record (`releases`, `withdrawals`) says against the releases anchored before
/// (`known`): one message per version and change, naming the version, never its bodies.
fn disagreements(
    known: &[Known],
    releases: &[Release],
    withdrawals: &[&Withdrawal],
) -> Vec<String> {
    let released: BTreeMap<&str, &Release> = releases.iter().map(|r| (r.id.as_str(), r)).collect();
    let withdrawn: BTreeMap<&str, &Withdrawal> =
        withdrawals.iter().map(|w| (w.id.as_str(), *w)).collect();
    let mut problems = Vec::new();
    for k in known {
        let anchored = format!(
            "released with content {} approved by {}, first loaded {}",
            short_hash(&k.content_hash),
            k.approved_by,
            time(&k.first_seen_at)
        );
        let withdrawal = match (&k.withdrawn_at, &k.withdrawn_by, &k.withdrawn_reason) {
            (Some(at), Some(by), Some(reason)) => {
                Some(format!("withdrawn on {} by {by} ({reason})", time(at)))
            }
            _ => None,
        };
        // Not in this record (an older checkout): nothing it could send.
        let Some(release) = released.get(k.id.as_str()) else {
            continue;
        };
        if release.content != k.content_hash {
            problems.push(format!(
                "{}: its content changed: {anchored}; entry {} of {LOCK_FILE} now releases content {}: an approved version never changes (add a new version)",
                k.id,
                release.entry,
                short_hash(&release.content)
            ));
        } else if release.approved_by != k.approved_by {
            problems.push(format!(
                "{}: its approver changed: {anchored}; entry {} of {LOCK_FILE} now names {}",
                k.id, release.entry, release.approved_by
            ));
        }
        if let (Some(anchored), Some(now)) = (&withdrawal, withdrawn.get(k.id.as_str())) {
            let same_time = DateTime::parse_from_rfc3339(&now.at)
                .is_ok_and(|at| Some(at.with_timezone(&Utc)) == k.withdrawn_at);
            if k.withdrawn_by.as_deref() != Some(now.by.as_str())
                || k.withdrawn_reason.as_deref() != Some(now.reason.as_str())
                || !same_time
            {
                problems.push(format!(
                    "{}: its withdrawal changed: {anchored}; entry {} of {LOCK_FILE} now says withdrawn on {} by {} ({})",
                    k.id, now.entry, now.at, now.by, now.reason
                ));
            }
        }
        if let Some(withdrawal) = withdrawal {
            if !withdrawn.contains_key(k.id.as_str()) {
                problems.push(format!(
                    "{}: its withdrawal is gone from {LOCK_FILE} ({withdrawal}): a withdrawn version is never released again (add a new version)",
                    k.id
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn release(id: &str, content: &str, approved_by: &str, entry: usize) -> Release {
        Release {
            id: id.into(),
            content: content.into(),
            approved_by: approved_by.into(),
            at: "2026-12-01T00:00:00Z".into(),
            entry,
        }
    }

    fn withdrawal(id: &str, content: &str, entry: usize) -> Withdrawal {
        Withdrawal {
            id: id.into(),
            content: content.into(),
            released_by: "legal".into(),
            released_at: "2026-12-01T00:00:00Z".into(),
            by: "alice".into(),
            reason: "wrong price".into(),
            at: "2026-12-03T10:00:00Z".into(),
            entry,
        }
    }

    fn known(id: &str, content: &str, withdrawn: bool) -> Known {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Known {
            id: id.into(),
            content_hash: content.into(),
            approved_by: "legal".into(),
            first_seen_at: at,
            withdrawn_reason: withdrawn.then(|| "wrong price".into()),
            withdrawn_by: withdrawn.then(|| "alice".into()),
            withdrawn_at: withdrawn.then_some(at),
        }
    }

    #[test]
    fn a_record_that_only_adds_to_the_anchored_releases_agrees() {
        let known = [known("f:1", A, false), known("g:1", A, true)];
        let w = withdrawal("g:1", A, 3);
        let h = withdrawal("f:1", A, 4);
        let releases = [release("f:1", A, "legal", 1), release("g:1", A, "legal", 2)];
        assert!(disagreements(&known, &releases, &[&w]).is_empty());
        // A new withdrawal and a new release are no disagreement.
        let more = [
            release("f:1", A, "legal", 1),
            release("g:1", A, "legal", 2),
            release("h:1", B, "sales", 5),
        ];
        assert!(disagreements(&known, &more, &[&w, &h]).is_empty());
        assert!(disagreements(&[], &more, &[]).is_empty());
    }

    #[test]
    fn each_disagreement_names_the_version_and_what_changed() {
        let known = [
            known("f:1", A, false),
            known("f:2", A, false),
            known("g:1", A, true),
            known("h:1", A, false),
        ];
        let releases = [
            release("f:1", B, "legal", 1),
            release("f:2", A, "someone", 2),
            release("g:1", A, "legal", 3),
        ];
        let problems = disagreements(&known, &releases, &[]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(
            problems[0],
            "f:1: its content changed: released with content aaaaaaaaaaaa approved by legal, first loaded 2026-12-03T10:00:00Z; entry 1 of approved.lock now releases content bbbbbbbbbbbb: an approved version never changes (add a new version)"
        );
        assert_eq!(
            problems[1],
            "f:2: its approver changed: released with content aaaaaaaaaaaa approved by legal, first loaded 2026-12-03T10:00:00Z; entry 2 of approved.lock now names someone"
        );
        assert_eq!(
            problems[2],
            "g:1: its withdrawal is gone from approved.lock (withdrawn on 2026-12-03T10:00:00Z by alice (wrong price)): a withdrawn version is never released again (add a new version)"
        );
        // h:1 is not in this record (an older checkout): no disagreement.
    }

    #[test]
    fn a_withdrawal_rewritten_after_it_was_anchored_is_named() {
        let known = [known("g:1", A, true)];
        let releases = [release("g:1", A, "legal", 1)];
        let mut kinder = withdrawal("g:1", A, 2);
        kinder.reason = "a kinder reason".into();
        let problems = disagreements(&known, &releases, &[&kinder]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("g:1: its withdrawal changed: withdrawn on 2026-12-03T10:00:00Z by alice (wrong price)")
                && problems[0].ends_with("by alice (a kinder reason)"),
            "{problems:?}"
        );
        let mut later = withdrawal("g:1", A, 2);
        later.at = "2026-12-04T00:00:00Z".into();
        assert_eq!(disagreements(&known, &releases, &[&later]).len(), 1);
    }

    #[test]
    fn a_record_older_than_the_anchored_releases_agrees() {
        // A rollback: the record lacks a release (withdrawn or not) and its folder.
        let known = [known("g:1", A, true), known("h:1", A, false)];
        assert!(disagreements(&known, &[], &[]).is_empty());
    }
}
