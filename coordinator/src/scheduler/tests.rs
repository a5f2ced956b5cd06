use super::*;
use proptest::prelude::*;

fn trial(i: usize) -> TrialRef {
    TrialRef {
        sweep_id: Arc::from("s"),
        trial_id: Arc::from(format!("t{i}").as_str()),
        gpus: 0,
        share: 1,
        group: Arc::from(format!("g{}", i % 2).as_str()),
    }
}

fn holder(w: &str, g: u64) -> Holder {
    Holder {
        worker_id: w.to_string(),
        generation: g,
    }
}

const CPU: Capacity = Capacity::gpus(0);

#[test]
fn fifo_acquire_and_finish() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    for i in 0..3 {
        s.enqueue(trial(i));
    }
    s.enqueue(trial(0)); // duplicate ignored
    assert_eq!(s.queued_len(), 3);
    let l0 = s.acquire(holder("w", 1), CPU, now).expect("lease");
    assert_eq!(&*l0.trial.trial_id, "t0");
    assert!(s.is_running("t0"));
    s.enqueue(trial(0)); // running: ignored
    assert_eq!(s.queued_len(), 2);
    assert!(s.finish("t0").is_some());
    assert!(!s.is_running("t0"));
}

#[test]
fn expired_lease_requeues_at_front() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    s.enqueue(trial(0));
    s.enqueue(trial(1));
    let l = s.acquire(holder("w", 1), CPU, now).expect("lease");
    assert!(s.expire(now + Duration::from_secs(9)).is_empty());
    assert_eq!(
        s.renew(
            &l.lease_id,
            &holder("w", 1),
            true,
            now + Duration::from_secs(9)
        ),
        RenewOutcome::Renewed { cancelled: false }
    );
    // Renewed at t=9: still alive at t=18, expired at t=19.
    assert!(s.expire(now + Duration::from_secs(18)).is_empty());
    let expired = s.expire(now + Duration::from_secs(19));
    assert_eq!(expired.len(), 1);
    let next = s
        .acquire(holder("w2", 1), CPU, now + Duration::from_secs(19))
        .expect("lease");
    assert_eq!(&*next.trial.trial_id, "t0", "expired trial goes first");
    assert_eq!(
        s.renew(&l.lease_id, &holder("w", 1), true, now),
        RenewOutcome::Unknown
    );
}

#[test]
fn only_the_holder_renews_and_fencing_requeues() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    s.enqueue(trial(0));
    let l = s.acquire(holder("w", 1), CPU, now).expect("lease");
    assert_eq!(
        s.renew(&l.lease_id, &holder("w", 2), true, now),
        RenewOutcome::NotHolder
    );
    assert_eq!(s.fence("w", 2).len(), 1);
    assert!(s.is_queued("t0"));
}

#[test]
fn adopt_only_when_nobody_holds_the_trial() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    s.enqueue(trial(0));
    assert!(s.adopt("t0", "old-lease", holder("w", 5), now));
    assert!(s.is_running("t0"));
    assert!(!s.adopt("t0", "other", holder("w2", 1), now));
    assert_eq!(
        s.renew("old-lease", &holder("w", 5), true, now),
        RenewOutcome::Renewed { cancelled: false }
    );
}

#[test]
fn cancel_drops_queue_and_flags_leases() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    for i in 0..3 {
        s.enqueue(trial(i));
    }
    let l = s.acquire(holder("w", 1), CPU, now).expect("lease");
    assert_eq!(s.cancel_sweep("s"), 2);
    assert!(s.acquire(holder("w", 1), CPU, now).is_none());
    assert_eq!(
        s.renew(&l.lease_id, &holder("w", 1), true, now),
        RenewOutcome::Renewed { cancelled: true }
    );
}

#[test]
fn gpu_trials_go_to_workers_with_enough_slots() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    let mut t = trial(0);
    t.gpus = 2;
    s.enqueue(t);
    s.enqueue(trial(1));
    let l = s
        .acquire(holder("one-gpu", 1), Capacity::gpus(1), now)
        .expect("cpu trial fits");
    assert_eq!(&*l.trial.trial_id, "t1");
    assert!(
        s.acquire(holder("one-gpu", 1), Capacity::gpus(1), now)
            .is_none()
    );
    let l = s
        .acquire(holder("two-gpu", 1), Capacity::gpus(2), now)
        .expect("fits");
    assert_eq!(&*l.trial.trial_id, "t0");
}

#[test]
fn group_acquire_takes_queued_trials_of_the_same_group() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    for i in 0..6 {
        s.enqueue(trial(i)); // groups g0: t0, t2, t4; g1: t1, t3, t5
    }
    let leases = s.acquire_group(holder("w", 1), CPU, 3, now);
    let ids: Vec<&str> = leases.iter().map(|l| &*l.trial.trial_id).collect();
    assert_eq!(ids, ["t0", "t2", "t4"]);
    let next = s.acquire_group(holder("w2", 1), CPU, 2, now);
    let ids: Vec<&str> = next.iter().map(|l| &*l.trial.trial_id).collect();
    assert_eq!(ids, ["t1", "t3"]);
    assert_eq!(s.queued_len(), 1);
    assert_eq!(s.running_len(), 5);
}

#[test]
fn packed_slots_take_only_gpu_trials_whose_sweep_allows_sharing() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    let gpu = |i: usize, share: u32| TrialRef {
        gpus: 1,
        share,
        ..trial(i)
    };
    s.enqueue(gpu(0, 1)); // wants a GPU of its own
    s.enqueue(gpu(1, 4)); // may share a GPU with 3 others
    s.enqueue(trial(2)); // CPU
    let slot = Capacity {
        gpu_slots: 1,
        sharers: 4,
    };
    let l = s.acquire(holder("slot", 1), slot, now).expect("lease");
    assert_eq!(&*l.trial.trial_id, "t1");
    let l = s.acquire(holder("slot", 1), slot, now).expect("lease");
    assert_eq!(&*l.trial.trial_id, "t2", "CPU trials run anywhere");
    assert!(s.acquire(holder("slot", 1), slot, now).is_none());
    let l = s
        .acquire(holder("whole", 1), Capacity::gpus(1), now)
        .expect("lease");
    assert_eq!(&*l.trial.trial_id, "t0");
}

#[test]
fn an_idle_worker_takes_over_a_reservation_that_has_not_started() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    for i in 0..2 {
        s.enqueue(trial(i));
    }
    let busy = s.acquire(holder("busy", 1), CPU, now).expect("lease");
    assert_eq!(&*busy.trial.trial_id, "t0");
    let reserved = s.reserve_group(holder("busy", 1), CPU, 1, now);
    assert_eq!(reserved.len(), 1);
    assert!(reserved[0].reserved);
    // Nothing left to reserve: a reservation never takes over another.
    assert!(s.reserve_group(holder("other", 1), CPU, 1, now).is_empty());
    // A heartbeat for the waiting reservation keeps it a reservation.
    assert_eq!(
        s.renew(&reserved[0].lease_id, &holder("busy", 1), false, now),
        RenewOutcome::Renewed { cancelled: false }
    );
    // An idle worker finds the queue empty and takes the reservation over.
    let taken = s.acquire(holder("idle", 1), CPU, now).expect("take over");
    assert_eq!(&*taken.trial.trial_id, "t1");
    assert_eq!(taken.taken_from, Some(holder("busy", 1)));
    assert!(!taken.reserved);
    // The reserving worker learns it at its next heartbeat.
    assert_eq!(
        s.renew(&reserved[0].lease_id, &holder("busy", 1), true, now),
        RenewOutcome::Unknown
    );
    assert_eq!(s.running_len(), 2);
    assert_eq!(s.reserved_len(), 0);
}

/// After a coordinator restart a worker re-adopts its trial under the lease
/// id an earlier coordinator minted; fresh leases never reuse it (a reused
/// id would replace the adopted lease, and the adopting worker's
/// completion would be refused as "held for another trial").
#[test]
fn fresh_lease_ids_never_collide_with_adopted_ones() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    for i in 0..4 {
        s.enqueue(trial(i));
    }
    assert!(s.adopt("t1", "l2", holder("a", 1), now));
    assert!(s.adopt("t3", "l7", holder("a", 1), now));
    assert!(
        !s.adopt("t0", "l2", holder("b", 1), now),
        "an id in use is refused"
    );
    let fresh: Vec<String> = (0..2)
        .map(|_| s.acquire(holder("b", 1), CPU, now).expect("lease").lease_id)
        .collect();
    assert!(
        !fresh.contains(&"l2".to_string()) && !fresh.contains(&"l7".to_string()),
        "{fresh:?}"
    );
    assert_eq!(s.lease_by_id("l2").map(|l| &*l.trial.trial_id), Some("t1"));
    assert_eq!(s.lease_by_id("l7").map(|l| &*l.trial.trial_id), Some("t3"));
    assert_eq!(s.running_len(), 4);
}

/// Requeueing a trial that has no lease (already queued again) leaves it
/// queued: it neither disappears nor goes in twice.
#[test]
fn requeue_without_a_lease_keeps_the_trial_queued() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    s.enqueue(trial(0));
    assert!(!s.requeue("t0"));
    assert_eq!(s.queued_len(), 1);
    let l = s.acquire(holder("w", 1), CPU, now).expect("lease");
    assert!(s.holds("t0", &holder("w", 1)));
    assert!(!s.holds("t0", &holder("v", 1)));
    assert!(s.requeue(&l.trial.trial_id));
    assert!(!s.requeue("t0"));
    assert_eq!(s.queued_len(), 1);
    assert_eq!(
        &*s.acquire(holder("v", 1), CPU, now)
            .expect("again")
            .trial
            .trial_id,
        "t0"
    );
}

#[test]
fn a_started_reservation_is_not_taken_over() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    s.enqueue(trial(0));
    s.enqueue(trial(1));
    let _running = s.acquire(holder("w", 1), CPU, now).expect("lease");
    let r = s.reserve_group(holder("w", 1), CPU, 1, now).remove(0);
    // The worker started it: its first heartbeat as a running trial.
    assert_eq!(
        s.renew(&r.lease_id, &holder("w", 1), true, now),
        RenewOutcome::Renewed { cancelled: false }
    );
    assert!(s.acquire(holder("idle", 1), CPU, now).is_none());
}

#[test]
fn taking_over_a_fused_reservation_takes_its_whole_group() {
    let now = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(10));
    for i in 0..6 {
        s.enqueue(trial(i)); // g0: t0, t2, t4; g1: t1, t3, t5
    }
    let running = s.acquire_group(holder("busy", 1), CPU, 3, now);
    assert_eq!(running.len(), 3);
    let reserved = s.reserve_group(holder("busy", 1), CPU, 3, now);
    let ids: Vec<&str> = reserved.iter().map(|l| &*l.trial.trial_id).collect();
    assert_eq!(ids, ["t1", "t3", "t5"]);
    let taken = s.acquire_group(holder("idle", 1), CPU, 3, now);
    let ids: Vec<&str> = taken.iter().map(|l| &*l.trial.trial_id).collect();
    assert_eq!(ids, ["t1", "t3", "t5"]);
    assert!(taken.iter().all(|l| l.holder == holder("idle", 1)));
}

#[derive(Debug, Clone)]
enum Action {
    Acquire(u8),
    Reserve(u8),
    Complete(u8),
    Advance(u8),
    Fence(u8),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0u8..4).prop_map(Action::Acquire),
        (0u8..4).prop_map(Action::Reserve),
        (0u8..4).prop_map(Action::Complete),
        (0u8..20).prop_map(Action::Advance),
        (0u8..4).prop_map(Action::Fence),
    ]
}

proptest! {
    /// Whatever workers do, every trial ends up completed exactly once and
    /// no trial is ever leased to two workers at the same time.
    #[test]
    fn no_trial_lost_or_doubly_leased(actions in proptest::collection::vec(action(), 1..200)) {
        let n = 12;
        let start = Instant::now();
        let mut now = start;
        let mut s = Scheduler::new(Duration::from_secs(10));
        for i in 0..n { s.enqueue(trial(i)); }
        let mut generation = [1u64; 4];
        let mut held: [Option<Lease>; 4] = Default::default();
        let mut reserved: [Option<Lease>; 4] = Default::default();
        let mut completed: HashSet<String> = HashSet::new();
        for a in actions {
            match a {
                Action::Acquire(w) => {
                    let w = w as usize;
                    if held[w].is_none() {
                        let me = holder(&format!("w{w}"), generation[w]);
                        // A worker with a reservation starts it; one whose
                        // reservation was taken over acquires afresh.
                        held[w] = match reserved[w].take() {
                            Some(r) if s.renew(&r.lease_id, &me, true, now) != RenewOutcome::Unknown => Some(r),
                            _ => s.acquire(me, CPU, now),
                        };
                    }
                }
                Action::Reserve(w) => {
                    let w = w as usize;
                    if held[w].is_some() && reserved[w].is_none() {
                        let me = holder(&format!("w{w}"), generation[w]);
                        reserved[w] = s.reserve_group(me, CPU, 1, now).pop();
                    }
                }
                Action::Complete(w) => {
                    let w = w as usize;
                    if let Some(l) = held[w].take() {
                        // Completion counts only if the lease is still ours.
                        if s.lease_by_id(&l.lease_id).map(|x| &x.holder) == Some(&l.holder) {
                            s.finish(&l.trial.trial_id);
                            prop_assert!(completed.insert(l.trial.trial_id.to_string()));
                        }
                    }
                }
                Action::Advance(secs) => {
                    now += Duration::from_secs(u64::from(secs));
                    s.expire(now);
                }
                Action::Fence(w) => {
                    let w = w as usize;
                    generation[w] += 1;
                    held[w] = None;
                    reserved[w] = None;
                    s.fence(&format!("w{w}"), generation[w]);
                }
            }
            // Invariant: queued and running are disjoint; each running trial has one lease.
            for t in s.running.keys() {
                prop_assert!(!s.queued.contains(t));
            }
            prop_assert_eq!(s.running.len(), s.leases.len());
            // Invariant: a reservation is never held by two workers.
            let mut owners: HashMap<&str, &Holder> = HashMap::new();
            for l in s.leases.values() {
                prop_assert!(owners.insert(&*l.trial.trial_id, &l.holder).is_none());
            }
        }
        // Drain: one worker finishes everything left.
        loop {
            now += Duration::from_secs(100);
            s.expire(now);
            match s.acquire(holder("drain", 1), CPU, now) {
                Some(l) => {
                    s.finish(&l.trial.trial_id);
                    prop_assert!(completed.insert(l.trial.trial_id.to_string()));
                }
                None => break,
            }
        }
        prop_assert_eq!(completed.len(), n);
    }
}
