//! The enrichment threads. Jobs wait in two bounded lanes: credential processes' files and
//! everyone else's. One thread serves only the credential lane, so an alert about ssh or sudo
//! never waits behind the analysis of another process's files, however many or large; the
//! other threads serve the credential lane first, then the other. Results are cached per file
//! version (device, inode, mtime, size) and shared by all threads. A job may also ask the package
//! database whether it vouches for the file ([`Verify`]); a file it vouches for is then not
//! analysed unless the job asks for the analysis anyway.
use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::elf::{ElfCache, ElfFacts, DEFAULT_CACHE_CAPACITY};
use crate::engine::provenance::{
    verifier::{Verifier, CHANGED_SINCE_MAPPED},
    Provenance,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Credential,
    Other,
    /// What a sweep found already loaded: served by a thread of its own, so that the start-up
    /// sweep's analyses (tens of files, some of many MiB) do not hold the first live alerts
    /// (queued with them, they held them 100–130 ms).
    Sweep,
}

/// How long stopping waits for threads still inside an analysis.
const STOP_GRACE: Duration = Duration::from_millis(300);

/// The lanes a thread serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    Credential,
    /// Credential processes' first, then the others'.
    Live,
    Sweep,
}

pub struct Job {
    pub id: u64,
    /// Where the file's bytes are read.
    pub path: PathBuf,
    pub lane: Lane,
    /// Ask the package database about the file first.
    pub verify: Option<Verify>,
    /// Analyse the file even when the package database vouches for it.
    pub always_analyse: bool,
}

/// The file as the package database knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Verify {
    /// The file's path inside `root`.
    pub path: String,
    /// The filesystem root whose database answers; the host's when `None`.
    pub root: Option<String>,
    /// The file version the kernel saw mapped, when it did: a file that is no longer that
    /// version is not the one to answer for.
    pub mapped: Option<detector_common::SeenKey>,
}

/// What a job found: the file's analysis (absent when the job skipped it: a verified file) and
/// the package database's answer (when asked).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub elf: Option<ElfFacts>,
    pub provenance: Option<Provenance>,
}

/// Where a finished job's facts go.
pub type Done = Box<dyn Fn(u64, Facts) + Send + Sync>;

struct Lanes {
    credential: VecDeque<Job>,
    other: VecDeque<Job>,
    sweep: VecDeque<Job>,
    stopping: bool,
}

struct Shared {
    lanes: Mutex<Lanes>,
    /// Set at stop: a hash in progress ends at its next chunk.
    cancel: AtomicBool,
    work: Condvar,
    cache: Mutex<ElfCache>,
    verifier: Arc<Verifier>,
    capacity: usize,
    hash_budget: u64,
    done: Done,
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `workers` threads for the live lanes, one for the credential lane alone and one for the
    /// sweep's (with no workers, the other lane is never served); each lane holds at most
    /// `capacity` waiting jobs.
    pub fn start(
        workers: usize,
        capacity: usize,
        hash_budget: u64,
        verifier: Arc<Verifier>,
        done: Done,
    ) -> Self {
        let shared = Arc::new(Shared {
            lanes: Mutex::new(Lanes {
                credential: VecDeque::new(),
                other: VecDeque::new(),
                sweep: VecDeque::new(),
                stopping: false,
            }),
            cancel: AtomicBool::new(false),
            work: Condvar::new(),
            cache: Mutex::new(ElfCache::new(DEFAULT_CACHE_CAPACITY, hash_budget)),
            verifier,
            capacity: capacity.max(1),
            hash_budget,
            done,
        });
        let mut threads = Vec::new();
        let threads_serving = [
            (Serves::Credential, "enrich-cred".to_owned()),
            (Serves::Sweep, "enrich-sweep".to_owned()),
        ]
        .into_iter()
        .chain((1..=workers).map(|i| (Serves::Live, format!("enrich-{i}"))));
        for (serves, name) in threads_serving {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(name)
                .spawn(move || work(&shared, serves));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => log::error!("starting an enrichment thread: {e}"),
            }
        }
        Pool { shared, threads }
    }

    /// Queues a job; gives it back when its lane is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let mut lanes = lock(&self.shared.lanes);
        let lane = match job.lane {
            Lane::Credential => &mut lanes.credential,
            Lane::Other => &mut lanes.other,
            Lane::Sweep => &mut lanes.sweep,
        };
        if lane.len() >= self.shared.capacity {
            return Err(job);
        }
        lane.push_back(job);
        drop(lanes);
        self.shared.work.notify_all();
        Ok(())
    }

    /// Drops what is still queued, cancels the reads in progress and waits for the threads.
    pub fn stop(self) {
        self.shared.cancel.store(true, Ordering::Relaxed);
        {
            let mut lanes = lock(&self.shared.lanes);
            lanes.stopping = true;
            lanes.credential.clear();
            lanes.other.clear();
            lanes.sweep.clear();
        }
        self.shared.work.notify_all();
        // A thread inside one file's analysis (the ELF reader checks the flag only between
        // hash chunks; the sweep's thread runs at a lower priority) is not waited for past
        // STOP_GRACE: its result would be dropped anyway, and the process's exit ends it.
        let until = Instant::now() + STOP_GRACE;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in self.threads.into_iter().filter(|t| t.is_finished()) {
            let _ = t.join();
        }
    }
}

impl Lanes {
    /// The next job for a thread that serves `serves`.
    fn next(&mut self, serves: Serves) -> Option<Job> {
        match serves {
            Serves::Credential => self.credential.pop_front(),
            Serves::Live => self
                .credential
                .pop_front()
                .or_else(|| self.other.pop_front()),
            Serves::Sweep => self.sweep.pop_front(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain data behind: keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn work(shared: &Shared, serves: Serves) {
    if serves == Serves::Sweep {
        lower_priority();
    }
    loop {
        let job = {
            let mut lanes = lock(&shared.lanes);
            loop {
                if lanes.stopping {
                    return;
                }
                if let Some(job) = lanes.next(serves) {
                    break job;
                }
                lanes = shared.work.wait(lanes).unwrap_or_else(|e| e.into_inner());
            }
        };
        let provenance = job.verify.as_ref().map(|v| {
            if v.mapped.is_some_and(|k| !still(&job.path, &k)) {
                return Provenance {
                    reasons: vec![CHANGED_SINCE_MAPPED],
                    ..Provenance::default()
                };
            }
            shared
                .verifier
                .verify(v.root.as_deref(), &v.path, &job.path)
        });
        let vouched = provenance.as_ref().is_some_and(|p| p.verified);
        let elf = (job.always_analyse || !vouched).then(|| analyse(shared, &job));
        let facts = Facts { elf, provenance };
        if shared.cancel.load(Ordering::Relaxed) {
            return;
        }
        (shared.done)(job.id, facts);
    }
}

/// Gives the calling thread a nice value 10 above the process's: the sweep's analyses (it hashes
/// whatever running processes had mapped, hundreds of MiB on a build host) then take the CPU
/// only when the live threads leave it.
fn lower_priority() {
    // SAFETY: getpriority and setpriority read and set the scheduling priority of the calling
    // thread (PRIO_PROCESS with its thread id); no memory is passed.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid, (nice + 10).min(19));
        }
    }
}

/// Whether the file at `path` is still the version the kernel saw mapped.
fn still(path: &std::path::Path, key: &detector_common::SeenKey) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).is_ok_and(|m| {
        let dev = (libc::major(m.dev()) << 20) | libc::minor(m.dev());
        m.ino() == key.ino && m.mtime() == key.mtime_sec && dev == key.dev
    })
}

/// From the cache when this version of the file was analysed before, else read now (outside
/// the cache's lock, so that the other threads go on).
fn analyse(shared: &Shared, job: &Job) -> ElfFacts {
    let meta = match super::elf::stat(&job.path) {
        Ok(meta) => meta,
        Err(failed) => return failed,
    };
    if let Some(facts) = lock(&shared.cache).cached(&meta) {
        return facts;
    }
    let (facts, read) =
        super::elf::analyze_versioned(&job.path, shared.hash_budget, &shared.cancel);
    if let Some(meta) = read {
        lock(&shared.cache).insert_for(&meta, facts.clone());
    }
    facts
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn pool(workers: usize, capacity: usize) -> (Pool, mpsc::Receiver<(u64, Facts)>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let done: Done = Box::new(move |id, facts| {
            let _ = lock(&tx).send((id, facts));
        });
        (
            Pool::start(
                workers,
                capacity,
                1 << 20,
                Arc::new(Verifier::new(1 << 20)),
                done,
            ),
            rx,
        )
    }

    #[test]
    fn the_sweeps_jobs_never_hold_live_ones_and_credential_ones_go_first() {
        let job = |id, lane| Job {
            id,
            path: PathBuf::new(),
            lane,
            verify: None,
            always_analyse: true,
        };
        let mut lanes = Lanes {
            credential: VecDeque::new(),
            other: VecDeque::new(),
            sweep: VecDeque::new(),
            stopping: false,
        };
        lanes.sweep.push_back(job(1, Lane::Sweep));
        lanes.other.push_back(job(2, Lane::Other));
        lanes.credential.push_back(job(3, Lane::Credential));
        lanes.credential.push_back(job(4, Lane::Credential));
        assert!(lanes.next(Serves::Credential).is_some_and(|j| j.id == 3));
        let live: Vec<u64> =
            std::iter::from_fn(|| lanes.next(Serves::Live).map(|j| j.id)).collect();
        assert_eq!(live, [4, 2], "credential first; never the sweep's");
        assert!(lanes.next(Serves::Credential).is_none());
        assert!(lanes.next(Serves::Sweep).is_some_and(|j| j.id == 1));
    }

    #[test]
    fn every_job_is_answered_and_text_is_not_elf() {
        let dir = std::env::temp_dir().join(format!("detector-pool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("notes.txt");
        std::fs::write(&file, "text").unwrap();
        let (p, rx) = pool(1, 8);
        for (id, lane) in [(1, Lane::Other), (2, Lane::Credential), (3, Lane::Other)] {
            p.submit(Job {
                id,
                path: file.clone(),
                lane,
                verify: None,
                always_analyse: true,
            })
            .unwrap_or_else(|_| panic!("lane full"));
        }
        let mut ids: Vec<u64> = (0..3)
            .map(|_| {
                let (id, facts) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                let facts = facts.elf.unwrap();
                assert_eq!(facts.error.as_deref(), Some("not an ELF file"));
                assert!(facts.sha256.is_some());
                id
            })
            .collect();
        ids.sort();
        assert_eq!(ids, [1, 2, 3]);
        p.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_the_package_database_vouches_for_is_not_analysed() {
        // Small: the pool hashes up to 1 MiB here.
        let packaged = "/usr/lib/x86_64-linux-gnu/libdl.so.2";
        if !std::path::Path::new("/var/lib/dpkg/info").is_dir()
            || !std::path::Path::new(packaged).exists()
        {
            return;
        }
        let dir = std::env::temp_dir().join(format!("detector-pool-v-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("libdl-copy.so");
        std::fs::copy(packaged, &copy).unwrap();
        let (p, rx) = pool(1, 8);
        for (id, path) in [(1, PathBuf::from(packaged)), (2, copy.clone())] {
            let verify = Some(Verify {
                path: path.display().to_string(),
                root: None,
                mapped: None,
            });
            p.submit(Job {
                id,
                path,
                lane: Lane::Other,
                verify,
                always_analyse: false,
            })
            .unwrap_or_else(|_| panic!("lane full"));
        }
        let mut got: Vec<(u64, Facts)> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        got.sort_by_key(|(id, _)| *id);
        let (vouched, copied) = (&got[0].1, &got[1].1);
        assert!(vouched.provenance.as_ref().unwrap().verified);
        assert!(vouched.elf.is_none());
        assert_eq!(
            copied.provenance.as_ref().unwrap().reasons,
            ["not_from_package"]
        );
        assert!(copied.elf.is_some());
        p.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_lane_gives_the_job_back() {
        // No thread serves the other lane: its one place stays taken.
        let (p, _rx) = pool(0, 1);
        let job = |id| Job {
            id,
            path: PathBuf::from("/nonexistent/detector-pool-test"),
            lane: Lane::Other,
            verify: None,
            always_analyse: true,
        };
        assert!(p.submit(job(1)).is_ok());
        let back = p.submit(job(2));
        assert!(back.is_err(), "lane of capacity 1 already holds a job");
        p.stop();
    }
}
