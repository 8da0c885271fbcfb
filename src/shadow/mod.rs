//! Shadow traffic: which candidates a request is mirrored to, within which bounds, and what the comparisons showed.

mod call;
mod job;
pub mod sampling;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::app::SharedApp;
use crate::config::{Candidate, Price, Route};
use crate::evaluate::{RouteEval, Timing};
use crate::proxy::body::Answer;
use crate::proxy::capture::Captured;
use crate::proxy::request::ClientRequest;
use crate::rng::fnv1a;
use crate::rng::NameMap;
use crate::state::{ModelSeries, RouteState, Snapshot};

pub use job::comparator_for;

/// The leader's answer as the client received it, handed to the shadow job when it ends, its
/// capture not yet read: the job reads it ([`LeaderAnswer::read`]) in its own task, so the
/// reading is not in the client's write (on one worker it runs once the connection's task has
/// written the answer and yielded).
pub struct LeaderAnswer {
    /// 2xx and streamed to the end.
    pub complete: bool,
    pub leader_failed: bool,
    pub answer: Answer,
    pub timing: Timing,
    /// Where the answer's tokens are metered, and their price.
    pub series: Arc<ModelSeries>,
    pub price: Option<Price>,
}

impl LeaderAnswer {
    /// Reads the capture and meters the tokens it reports.
    pub fn read(self) -> LeaderResult {
        let captured = self.answer.read();
        if let Some(usage) = &captured.usage {
            self.series.meter(usage, self.price.as_ref());
        }
        LeaderResult {
            ok: self.complete && captured.error.is_none(),
            leader_failed: self.leader_failed,
            captured,
            timing: self.timing,
        }
    }
}

/// The leader's answer, read.
pub struct LeaderResult {
    /// 2xx, streamed to the end, and no error in the body.
    pub ok: bool,
    /// The leader itself failed (5xx, 429, a cut or timed-out stream); a client that went
    /// away or a 4xx for a bad request is not the leader's failure.
    pub leader_failed: bool,
    pub captured: Captured,
    pub timing: Timing,
}

/// Spend of one candidate in the current hour.
struct Budget {
    hour_start: Instant,
    spent: f64,
}

/// Who served a request, kept for a while so feedback can find it.
#[derive(Clone)]
pub struct Served {
    pub route: Arc<str>,
    pub model: Arc<str>,
}

/// The last `SERVED_CAPACITY` served requests, as a ring: a request writes one slot in order
/// (no hash-table probe, no eviction walk), and the rare feedback call scans for its id's
/// 64-bit hash, newest first (two live ids colliding among 100,000 has odds of about 1 in 10^9).
#[derive(Default)]
struct ServedLog {
    ids: Vec<u64>,
    who: Vec<Served>,
    next: usize,
}

impl ServedLog {
    fn push(&mut self, id: u64, served: Served) {
        if self.ids.len() < SERVED_CAPACITY {
            self.ids.push(id);
            self.who.push(served);
        } else {
            self.ids[self.next] = id;
            self.who[self.next] = served;
        }
        self.next = (self.next + 1) % SERVED_CAPACITY;
    }

    fn find(&self, id: u64) -> Option<&Served> {
        let newest_first = (0..self.next).rev().chain((self.next..self.ids.len()).rev());
        newest_first.into_iter().find(|i| self.ids[*i] == id).map(|i| &self.who[i])
    }
}

const SERVED_CAPACITY: usize = 100_000;

/// Process-wide shadow state.
#[derive(Default)]
pub struct Shadow {
    limits: Mutex<ByRoute<Arc<Semaphore>>>,
    budgets: Mutex<ByRoute<Budget>>,
    evaluations: Mutex<NameMap<String, RouteEval>>,
    served: Mutex<ServedLog>,
}

/// Values kept per (route, name), found by `&str` without building a key.
type ByRoute<V> = NameMap<String, NameMap<String, V>>;

/// The value for (route, name), made by `new` the first time; keys are allocated only then.
fn by_route<'a, V>(map: &'a mut ByRoute<V>, route: &str, name: &str, new: impl FnOnce() -> V) -> Option<&'a mut V> {
    if !map.contains_key(route) {
        map.insert(route.to_string(), NameMap::default());
    }
    let names = map.get_mut(route)?;
    if !names.contains_key(name) {
        names.insert(name.to_string(), new());
    }
    names.get_mut(name)
}

/// The route's evaluation, made on first use with `leader` as its leader; the route's name is
/// copied into the map only then.
fn eval_for<'a>(
    evals: &'a mut NameMap<String, RouteEval>,
    name: &str,
    leader: &str,
    route: &Route,
) -> Option<&'a mut RouteEval> {
    if !evals.contains_key(name) {
        evals.insert(name.to_string(), RouteEval::new(leader, route.policy.min_samples));
    }
    evals.get_mut(name)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a sampled shadow request was not sent.
#[derive(Debug, Clone, Copy)]
pub enum Drop {
    Inflight,
    Budget,
    Draining,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Inflight => "inflight",
            Drop::Budget => "budget",
            Drop::Draining => "draining",
        }
    }
}

impl Shadow {
    /// The route's evaluation state, for reading or recording.
    pub fn evaluations(&self) -> MutexGuard<'_, NameMap<String, RouteEval>> {
        lock(&self.evaluations)
    }

    /// Aligns evaluations with a new snapshot: routes that are gone are dropped, and a
    /// route whose leader changed starts over (its old evidence was about another leader).
    pub fn sync_routes(&self, snap: &Snapshot) {
        let mut evals = self.evaluations();
        evals.retain(|name, eval| snap.routes.iter().any(|r| &r.route.name == name && r.leader == eval.leader));
        for r in &snap.routes {
            evals.entry(r.route.name.clone()).or_insert_with(|| RouteEval::new(&r.leader, r.route.policy.min_samples));
        }
    }

    fn permit(&self, route: &str, key: &str, limit: usize) -> Option<OwnedSemaphorePermit> {
        let sem = by_route(&mut lock(&self.limits), route, key, || Arc::new(Semaphore::new(limit)))?.clone();
        sem.try_acquire_owned().ok()
    }

    fn within_budget(&self, route: &str, c: &Candidate) -> bool {
        let Some(limit) = c.budget_per_hour else { return true };
        let mut budgets = lock(&self.budgets);
        let new = || Budget { hour_start: Instant::now(), spent: 0.0 };
        let Some(b) = by_route(&mut budgets, route, &c.model, new) else { return true };
        if b.hour_start.elapsed() >= Duration::from_secs(3600) {
            *b = Budget { hour_start: Instant::now(), spent: 0.0 };
        }
        b.spent < limit
    }

    fn spend(&self, route: &str, candidate: &str, usd: f64) {
        if let Some(b) = lock(&self.budgets).get_mut(route).and_then(|names| names.get_mut(candidate)) {
            b.spent += usd;
        }
    }

    /// Remembers who served a request, for feedback.
    pub fn served(&self, request_id: &str, served: Served) {
        lock(&self.served).push(fnv1a(request_id.as_bytes()), served);
    }

    pub fn lookup_served(&self, request_id: &str) -> Option<Served> {
        lock(&self.served).find(fnv1a(request_id.as_bytes())).cloned()
    }
}

/// Decides which candidates this request is mirrored to and starts the background job.
/// Returns the sender for the leader's answer, or None when nothing is shadowed.
/// Never waits: a full candidate or an exhausted budget is a counted drop.
pub fn start(
    app: &SharedApp,
    snap: &Arc<Snapshot>,
    route: &RouteState,
    req: &Arc<ClientRequest>,
    request_id: &HeaderValue,
) -> Option<oneshot::Sender<LeaderAnswer>> {
    if route.candidates.is_empty() {
        return None;
    }
    let name = route.route.name.as_str();
    let id = request_id.as_bytes();
    let mut sampled = route.candidates.iter().filter(|c| sampling::sampled(id, name, &c.model, c.sample)).peekable();
    // Most requests are mirrored nowhere: they allocate nothing here.
    sampled.peek()?;
    let mut jobs = Vec::new();
    for c in sampled {
        let dropped = if app.draining() {
            Some(Drop::Draining)
        } else if !app.shadow.within_budget(name, c) {
            Some(Drop::Budget)
        } else {
            match app.shadow.permit(name, &c.model, c.max_inflight) {
                Some(permit) => {
                    jobs.push((c.clone(), permit));
                    None
                }
                None => Some(Drop::Inflight),
            }
        };
        if let Some(reason) = dropped {
            app.metrics.shadow_dropped.with_label_values(&[name, &c.model, reason.as_str()]).inc();
            if let Some(eval) = eval_for(&mut app.shadow.evaluations(), name, &route.leader, &route.route) {
                eval.dropped(&c.model, reason.as_str());
            }
        }
    }
    if jobs.is_empty() {
        return None;
    }
    let noise = if sampling::sampled(id, name, "leader-noise", route.route.evaluate.noise_sample) {
        let limit = jobs.iter().map(|(c, _)| c.max_inflight).max().unwrap_or(1);
        app.shadow.permit(name, "leader-noise", limit)
    } else {
        None
    };
    let segment = {
        let ev = &route.route.evaluate;
        let mut evals = app.shadow.evaluations();
        let eval = eval_for(&mut evals, name, &route.leader, &route.route)?;
        eval.segmenter.key(&ev.segment_by, |h| req.headers.get_str(h).map(str::to_string), ev.max_segments)
    };
    let (tx, rx) = oneshot::channel();
    let job = job::Job {
        app: app.clone(),
        snap: snap.clone(),
        route: route.route.clone(),
        leader: route.leader.clone(),
        jobs,
        noise,
        req: req.clone(),
        request_id: request_id.clone(),
        segment,
    };
    // Boxed: the job's state is large, and a task holding it inline copies it on spawn and on exit.
    app.tasks.spawn(Box::pin(job.run(rx)));
    Some(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(model: &str) -> Served {
        Served { route: Arc::from("r"), model: Arc::from(model) }
    }

    #[test]
    fn the_served_log_keeps_the_newest_and_forgets_the_oldest() {
        let shadow = Shadow::default();
        assert!(shadow.lookup_served("nope").is_none());
        for i in 0..SERVED_CAPACITY + 10 {
            shadow.served(&format!("req-{i}"), who(&format!("m{i}")));
        }
        // The ten oldest were overwritten; the ones after them, and the newest, are there.
        assert!(shadow.lookup_served("req-0").is_none());
        assert!(shadow.lookup_served("req-9").is_none());
        assert_eq!(&*shadow.lookup_served("req-10").unwrap().model, "m10");
        let last = SERVED_CAPACITY + 9;
        assert_eq!(&*shadow.lookup_served(&format!("req-{last}")).unwrap().model, format!("m{last}"));
        // An id served twice answers with its latest server.
        shadow.served("req-10", who("again"));
        assert_eq!(&*shadow.lookup_served("req-10").unwrap().model, "again");
    }
}
