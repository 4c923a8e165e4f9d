//! Failed password attempts per key, shared by every pglab replica.

use super::{Store, StoreError};

impl Store {
    /// Counts an attempt of `key` unless `per_key` were counted within
    /// the last `window_secs`: then the seconds until the oldest of them
    /// expires. Attempts of one key are counted one at a time (a lock for
    /// the key), so parallel ones cannot all pass; old ones are removed.
    pub async fn count_attempt(
        &self,
        key: &str,
        per_key: i64,
        window_secs: i64,
    ) -> Result<Result<(), u64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('pglab login ' || $1))",
            &[&key],
        )
        .await?;
        let window = format!("{window_secs} seconds");
        tx.execute(
            "DELETE FROM login_attempts WHERE key = $1 AND at < now() - $2::text::interval",
            &[&key, &window],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT count(*), extract(epoch FROM now() - min(at))::bigint FROM login_attempts WHERE key = $1",
                &[&key],
            )
            .await?;
        let (n, age): (i64, Option<i64>) = (row.get(0), row.get(1));
        if n >= per_key {
            let wait = (window_secs - age.unwrap_or(0)).max(0) + 1;
            return Ok(Err(wait as u64));
        }
        tx.execute("INSERT INTO login_attempts (key) VALUES ($1)", &[&key])
            .await?;
        // Now and then, the attempts of every key that expired.
        if rand::random::<u8>() < 4 {
            tx.execute(
                "DELETE FROM login_attempts WHERE at < now() - $1::text::interval",
                &[&window],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// The password was right: the key's attempts are forgotten.
    pub async fn forgive_attempts(&self, key: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute("DELETE FROM login_attempts WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }
}
