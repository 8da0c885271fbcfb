//! The embedded SQLite backend of the state store (WAL mode; SREs can query it with `sqlite3`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_ms, ComparisonRecord, DecisionRecord, FeedbackRecord, Override, Store, StoreError};

/// A SQLite database file.
pub struct SqliteStore {
    conn: Connection,
    /// The insert of [`ROWS_PER_INSERT`] comparison rows, and of one.
    insert_many: String,
    insert_one: String,
}

/// A comparison row's columns, in the order [`bind_row`] binds them.
const COLUMNS: &str = "at_ms, route, candidate, leader, segment, request_id, outcome, agreement, noise, judge, \
    judge_inconclusive, leader_ttft_ms, leader_total_ms, candidate_ttft_ms, candidate_total_ms, tokens_in, tokens_out, \
    cost_usd, payload_request, payload_leader, payload_candidate";
const WIDTH: usize = 21;
/// Comparison rows per insert statement: a statement's own work (its start, cursor and reset)
/// is paid once for this many rows, about 600 fewer instructions per stored row on the writer
/// thread (callgrind).
const ROWS_PER_INSERT: usize = 16;

/// The insert of `rows` comparison rows.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; WIDTH].join(", "));
    format!("INSERT INTO comparisons ({COLUMNS}) VALUES {}", vec![row; rows].join(", "))
}

/// Inserts `rows` by `stmt`, prepared by [`insert_sql`] for that many.
fn insert(stmt: &mut rusqlite::Statement<'_>, rows: &[&ComparisonRecord]) -> Result<(), StoreError> {
    for (i, r) in rows.iter().enumerate() {
        bind_row(stmt, 1 + i * WIDTH, r).map_err(err)?;
    }
    stmt.raw_execute().map(drop).map_err(err)
}

/// Binds `r`'s columns to the parameters from `first` (1-based) on.
fn bind_row(stmt: &mut rusqlite::Statement<'_>, first: usize, r: &ComparisonRecord) -> rusqlite::Result<()> {
    let payload = r.payload.as_ref();
    let values: [&dyn rusqlite::ToSql; WIDTH] = [
        &r.at_ms,
        &r.route,
        &r.candidate,
        &r.leader,
        &r.segment,
        &r.request_id,
        &r.outcome,
        &r.agreement,
        &r.noise,
        &r.judge,
        &r.judge_inconclusive,
        &r.leader_ttft_ms,
        &r.leader_total_ms,
        &r.candidate_ttft_ms,
        &r.candidate_total_ms,
        &(r.tokens_in as i64),
        &(r.tokens_out as i64),
        &r.cost_usd,
        &payload.map(|p| p.request.as_str()),
        &payload.map(|p| p.leader.as_str()),
        &payload.map(|p| p.candidate.as_str()),
    ];
    for (k, v) in values.into_iter().enumerate() {
        stmt.raw_bind_parameter(first + k, v)?;
    }
    Ok(())
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS comparisons (
  id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, route TEXT NOT NULL, candidate TEXT NOT NULL,
  leader TEXT NOT NULL, segment TEXT NOT NULL, request_id TEXT NOT NULL, outcome TEXT NOT NULL,
  agreement REAL, noise REAL, judge REAL, judge_inconclusive INTEGER NOT NULL,
  leader_ttft_ms REAL NOT NULL, leader_total_ms REAL NOT NULL, candidate_ttft_ms REAL, candidate_total_ms REAL,
  tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, cost_usd REAL NOT NULL,
  payload_request TEXT, payload_leader TEXT, payload_candidate TEXT);
DROP INDEX IF EXISTS comparisons_at;
CREATE TABLE IF NOT EXISTS decisions (
  id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, route TEXT NOT NULL, kind TEXT NOT NULL,
  from_model TEXT NOT NULL, to_model TEXT NOT NULL, reason TEXT NOT NULL, evidence TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS overrides (
  route TEXT PRIMARY KEY, model TEXT NOT NULL, configured_leader TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
  id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL,
  request_id TEXT NOT NULL, score REAL NOT NULL);
";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(2)).map_err(err)?;
        // WAL keeps readers (sqlite3, backups) from blocking the writer.
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(err)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(SqliteStore { conn, insert_many: insert_sql(ROWS_PER_INSERT), insert_one: insert_sql(1) })
    }

    /// Number of comparison records (for tests and status).
    pub fn count_comparisons(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM comparisons", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(err)
    }
}

impl Store for SqliteStore {
    fn comparisons(&mut self, records: &[&ComparisonRecord]) -> Vec<StoreError> {
        // Prepared once for the whole run: the statement cache's lookup (hashing the SQL text)
        // would otherwise cost as much again per statement.
        let (mut many, mut one) =
            match (self.conn.prepare_cached(&self.insert_many), self.conn.prepare_cached(&self.insert_one)) {
                (Ok(many), Ok(one)) => (many, one),
                (Err(e), _) | (_, Err(e)) => return records.iter().map(|_| StoreError(e.to_string())).collect(),
            };
        let mut failed = Vec::new();
        let mut chunks = records.chunks_exact(ROWS_PER_INSERT);
        for chunk in &mut chunks {
            if insert(&mut many, chunk).is_err() {
                // A statement refused for one row (a constraint, a trigger) lands none of its
                // rows: find the ones that fail one by one. An error that rolls back the whole
                // transaction (a full disk, an I/O error) loses the run's earlier rows as well,
                // as it did when rows went one by one.
                failed.extend(chunk.iter().filter_map(|r| insert(&mut one, std::slice::from_ref(r)).err()));
            }
        }
        failed.extend(chunks.remainder().iter().filter_map(|r| insert(&mut one, std::slice::from_ref(r)).err()));
        failed
    }

    fn decision(&mut self, d: &DecisionRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO decisions (at_ms, route, kind, from_model, to_model, reason, evidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![d.at_ms, d.route, d.kind, d.from, d.to, d.reason, d.evidence.to_string()],
            )
            .map(|_| ())
            .map_err(err)
    }

    fn set_override(&mut self, route: &str, o: Option<&Override>) -> Result<(), StoreError> {
        match o {
            Some(o) => self.conn.execute(
                "INSERT INTO overrides (route, model, configured_leader, at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(route) DO UPDATE SET model = excluded.model, configured_leader = excluded.configured_leader, at_ms = excluded.at_ms",
                params![route, o.model, o.configured_leader, o.at_ms],
            ),
            None => self.conn.execute("DELETE FROM overrides WHERE route = ?1", params![route]),
        }
        .map(|_| ())
        .map_err(err)
    }

    fn feedback(&mut self, f: &FeedbackRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO feedback (at_ms, route, model, request_id, score) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![f.at_ms, f.route, f.model, f.request_id, f.score],
            )
            .map(|_| ())
            .map_err(err)
    }

    fn overrides(&mut self) -> Result<Vec<Override>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT route, model, configured_leader, at_ms FROM overrides ORDER BY route")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Override { route: r.get(0)?, model: r.get(1)?, configured_leader: r.get(2)?, at_ms: r.get(3)? })
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    fn decisions(&mut self, limit: usize) -> Result<Vec<DecisionRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at_ms, route, kind, from_model, to_model, reason, evidence FROM decisions ORDER BY id DESC LIMIT ?1")
            .map_err(err)?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                let evidence: String = r.get(6)?;
                Ok(DecisionRecord {
                    at_ms: r.get(0)?,
                    route: r.get(1)?,
                    kind: r.get(2)?,
                    from: r.get(3)?,
                    to: r.get(4)?,
                    reason: r.get(5)?,
                    evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::Null),
                })
            })
            .map_err(err)?;
        let mut out = rows.collect::<Result<Vec<_>, _>>().map_err(err)?;
        out.reverse();
        Ok(out)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN").map_err(err)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(err)
    }

    fn prune(&mut self, max_age: Duration, max_rows: u64) -> Result<u64, StoreError> {
        let cutoff = now_ms() - max_age.as_millis() as i64;
        // Rows arrive in time order, so the expired ones are those before the first row that
        // is not: found walking from the oldest, without an index on `at_ms` to keep up on
        // every insert. A row that arrived out of order (the clock stepped back) is never
        // deleted young; an old one behind a younger row waits for that row's turn.
        let mut n = self
            .conn
            .execute(
                "DELETE FROM comparisons WHERE id < COALESCE(
                   (SELECT id FROM comparisons WHERE at_ms >= ?1 ORDER BY id LIMIT 1),
                   (SELECT MAX(id) + 1 FROM comparisons))",
                params![cutoff],
            )
            .map_err(err)? as u64;
        let keep_from: Option<i64> = self
            .conn
            .query_row("SELECT id FROM comparisons ORDER BY id DESC LIMIT 1 OFFSET ?1", params![max_rows as i64], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        if let Some(id) = keep_from {
            n += self.conn.execute("DELETE FROM comparisons WHERE id <= ?1", params![id]).map_err(err)? as u64;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Payload, Write};

    fn record(i: i64) -> ComparisonRecord {
        ComparisonRecord {
            at_ms: now_ms() - i,
            route: "chat".into(),
            candidate: "qwen".into(),
            leader: "gpt".into(),
            segment: "all".into(),
            request_id: format!("r{i}"),
            outcome: "ok",
            agreement: Some(0.5),
            noise: None,
            judge: Some(1.0),
            judge_inconclusive: false,
            leader_ttft_ms: 1.0,
            leader_total_ms: 2.0,
            candidate_ttft_ms: Some(1.5),
            candidate_total_ms: Some(2.5),
            tokens_in: 3,
            tokens_out: 4,
            cost_usd: 0.001,
            payload: None,
        }
    }

    /// A database file of its own for the test `name`, not there yet.
    fn fresh_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sr-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("state.db");
        let _ = std::fs::remove_file(&path);
        path
    }

    fn override_to_qwen() -> Override {
        Override { route: "chat".into(), model: "qwen".into(), configured_leader: "gpt".into(), at_ms: 1 }
    }

    fn promotion() -> DecisionRecord {
        DecisionRecord {
            at_ms: 2,
            route: "chat".into(),
            kind: "promote".into(),
            from: "gpt".into(),
            to: "qwen".into(),
            reason: "leader degraded".into(),
            evidence: serde_json::json!({"samples": 400}),
        }
    }

    /// The writer takes a queue of mixed writes in order: runs of comparisons between other
    /// writes land once each, in the order sent, and nothing is counted as an error.
    #[test]
    fn the_writer_lands_runs_of_comparisons_between_other_writes() {
        use prometheus::core::Collector;
        let path = fresh_path("writer");
        let errors = prometheus::IntCounterVec::new(prometheus::Opts::new("e", "e"), &["op"]).unwrap();
        let (handle, writer, _, _) = crate::store::open(&path, errors.clone());
        let comparison = |i| Write::Comparison(Box::new(record(i)));
        let feedback = FeedbackRecord {
            at_ms: 3,
            route: "chat".into(),
            model: "qwen".into(),
            request_id: "r1".into(),
            score: 1.0,
        };
        for w in [
            comparison(0),
            comparison(1),
            Write::Decision(promotion()),
            comparison(2),
            Write::Override { route: "chat".into(), value: Some(override_to_qwen()) },
            Write::Feedback(feedback),
            comparison(3),
            comparison(4),
            comparison(5),
        ] {
            handle.send(w);
        }
        handle.stop();
        writer.join();
        let s = SqliteStore::open(&path).unwrap();
        let ids: Vec<String> = s
            .conn
            .prepare("SELECT request_id FROM comparisons ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4", "r5"]);
        let count = |table: &str| {
            s.conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).unwrap()
        };
        assert_eq!((count("decisions"), count("overrides"), count("feedback")), (1, 1, 1));
        assert!(errors.collect().iter().all(|f| f.get_metric().iter().all(|m| m.get_counter().get_value() == 0.0)));
    }

    /// A run longer than one statement's rows lands whole, in order, every column as given,
    /// from a full statement and from the rows after the last one alike.
    #[test]
    fn a_run_of_comparisons_lands_by_statements_of_many_rows_and_the_rest_one_by_one() {
        let mut s = SqliteStore::open(&fresh_path("run")).unwrap();
        let mut records: Vec<ComparisonRecord> = (0..2 * ROWS_PER_INSERT as i64 + 5).map(record).collect();
        records[3].payload = Some(Payload { request: "q".into(), leader: "a".into(), candidate: "b".into() });
        records[3].agreement = None;
        records[35].candidate_ttft_ms = None;
        records[35].judge_inconclusive = true;
        let run: Vec<&ComparisonRecord> = records.iter().collect();
        assert!(s.comparisons(&run).is_empty());
        let rows: Vec<String> = s
            .conn
            .prepare(&format!("SELECT json_array({COLUMNS}) FROM comparisons ORDER BY id"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = |r: &ComparisonRecord| {
            let p = r.payload.as_ref();
            serde_json::json!([
                r.at_ms,
                r.route,
                r.candidate,
                r.leader,
                r.segment,
                r.request_id,
                r.outcome,
                r.agreement,
                r.noise,
                r.judge,
                i64::from(r.judge_inconclusive),
                r.leader_ttft_ms,
                r.leader_total_ms,
                r.candidate_ttft_ms,
                r.candidate_total_ms,
                r.tokens_in,
                r.tokens_out,
                r.cost_usd,
                p.map(|p| &p.request),
                p.map(|p| &p.leader),
                p.map(|p| &p.candidate)
            ])
        };
        assert_eq!(rows.len(), records.len());
        for (row, r) in rows.iter().zip(&records) {
            assert_eq!(serde_json::from_str::<serde_json::Value>(row).unwrap(), expected(r), "{row}");
        }
    }

    /// A row the database refuses costs only itself: the rest of its statement's rows land.
    #[test]
    fn a_refused_row_is_reported_alone_and_its_neighbours_land() {
        let mut s = SqliteStore::open(&fresh_path("refused")).unwrap();
        s.conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON comparisons WHEN NEW.request_id IN ('r5', 'r33')
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let records: Vec<ComparisonRecord> = (0..2 * ROWS_PER_INSERT as i64 + 5).map(record).collect();
        let run: Vec<&ComparisonRecord> = records.iter().collect();
        let failed = s.comparisons(&run);
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed.iter().all(|e| e.0.contains("refused")), "{failed:?}");
        assert_eq!(s.count_comparisons().unwrap(), records.len() as u64 - 2);
    }

    #[test]
    fn prune_by_age_deletes_the_expired_run_from_the_oldest() {
        let mut s = SqliteStore::open(&fresh_path("prune-age")).unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(s.prune(hour, 1000).unwrap(), 0);
        let two_hours = 7_200_000;
        // Three expired, two fresh, then one expired out of order (the clock stepped back).
        let records: Vec<ComparisonRecord> = [two_hours, two_hours, two_hours, 5, 1, two_hours].map(record).into();
        assert!(s.comparisons(&records.iter().collect::<Vec<_>>()).is_empty());
        assert_eq!(s.prune(hour, 1000).unwrap(), 3);
        let ids = |s: &SqliteStore| -> Vec<String> {
            let mut q = s.conn.prepare("SELECT request_id FROM comparisons ORDER BY id").unwrap();
            q.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(ids(&s), ["r5", "r1", "r7200000"]);
        // Nothing fresh left: everything goes.
        assert_eq!(s.prune(Duration::ZERO, 1000).unwrap(), 3);
        assert_eq!(s.count_comparisons().unwrap(), 0);
        // A database made with the old index loses it on opening.
        let path = fresh_path("prune-index");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute_batch("CREATE INDEX comparisons_at ON comparisons(at_ms)").unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let indexes: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'comparisons_at'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(indexes, 0);
    }

    #[test]
    fn overrides_and_decisions_survive_reopening_and_prune_bounds_records() {
        let path = fresh_path("sqlite");
        {
            let mut s = SqliteStore::open(&path).unwrap();
            s.set_override("chat", Some(&override_to_qwen())).unwrap();
            s.decision(&promotion()).unwrap();
            let records: Vec<ComparisonRecord> = (0..10).map(record).collect();
            assert!(s.comparisons(&records.iter().collect::<Vec<_>>()).is_empty());
            assert_eq!(s.prune(Duration::from_secs(3600), 4).unwrap(), 6);
            assert_eq!(s.count_comparisons().unwrap(), 4);
        }
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.overrides().unwrap()[0].model, "qwen");
        let d = s.decisions(10).unwrap();
        assert_eq!(d[0].evidence["samples"], 400);
        s.set_override("chat", None).unwrap();
        assert!(s.overrides().unwrap().is_empty());
    }
}
