//! Per-call latency percentiles, which criterion does not give: each call is
//! timed on its own with `Instant`, the engines taking turns round after
//! round so that noise on the machine falls on all of them alike.
//!
//! `cargo bench -p portcullis-benches --bench check_percentiles` on the large
//! tenant; under `cargo test` a few calls on a small tenant. Nothing is subtracted from
//! the times: the first row measures the timer around an empty call, which
//! is included in every other row.

// Each bench target compiles the support module whole and uses part of it.
#[allow(dead_code)]
mod support;

use std::hint::black_box;
use std::time::Instant;

use support::tenant::NOW;
use support::{Engines, casbin_engine, cedar_engine, portcullis_engine};

/// How many calls of each kind one round makes.
struct Plan {
    rounds: usize,
    warm_up_rounds: usize,
    portcullis: usize,
    cedar: usize,
    casbin: usize,
    other: usize,
}

impl Plan {
    /// 20 rounds: every query 20 times through Portcullis, 5 times through
    /// Cedar and once through casbin, which keeps a run under a minute.
    fn benchmark(queries: usize) -> Plan {
        let rounds = 20;
        Plan {
            rounds,
            warm_up_rounds: 2,
            portcullis: queries,
            cedar: queries * 5 / rounds,
            casbin: queries / rounds,
            other: queries / 2,
        }
    }

    fn smoke(queries: usize) -> Plan {
        Plan { rounds: 1, warm_up_rounds: 1, portcullis: queries, cedar: 50, casbin: 20, other: 50 }
    }
}

/// Hands out the items of a slice with their position, round and round.
struct Cycle<'a, T> {
    items: &'a [T],
    next: usize,
}

impl<'a, T> Cycle<'a, T> {
    fn new(items: &'a [T]) -> Self {
        Cycle { items, next: 0 }
    }

    fn next(&mut self) -> (usize, &'a T) {
        let at = self.next;
        self.next = (self.next + 1) % self.items.len();
        (at, &self.items[at])
    }
}

/// Durations in nanoseconds, each with whether its query was allowed.
#[derive(Default)]
struct Samples(Vec<(u64, bool)>);

impl Samples {
    /// Times `count` calls one by one. The result goes through `black_box`
    /// before the clock is read, so the call cannot be moved past it.
    #[inline(never)]
    fn time<T, R>(
        &mut self,
        items: &mut Cycle<'_, T>,
        count: usize,
        allowed: &dyn Fn(usize) -> bool,
        mut call: impl FnMut(&T) -> R,
    ) {
        for _ in 0..count {
            let (at, item) = items.next();
            let item = black_box(item);
            let started = Instant::now();
            black_box(call(item));
            let elapsed = started.elapsed();
            self.0.push((elapsed.as_nanos() as u64, allowed(at)));
        }
    }

    /// Like [`Samples::time`], but each timed call repeats one made just
    /// before it, so what it touches is in the cache: the difference from
    /// `time` is the cost of memory, not of the work.
    #[inline(never)]
    fn time_repeated<T, R>(
        &mut self,
        items: &mut Cycle<'_, T>,
        count: usize,
        allowed: &dyn Fn(usize) -> bool,
        mut call: impl FnMut(&T) -> R,
    ) {
        for _ in 0..count {
            let (at, item) = items.next();
            let item = black_box(item);
            black_box(call(item));
            let started = Instant::now();
            black_box(call(item));
            let elapsed = started.elapsed();
            self.0.push((elapsed.as_nanos() as u64, allowed(at)));
        }
    }

    /// Times one call that needs its arguments by value or the index mutably.
    fn time_once<R>(&mut self, call: impl FnOnce() -> R) {
        let started = Instant::now();
        black_box(call());
        let elapsed = started.elapsed();
        self.0.push((elapsed.as_nanos() as u64, false));
    }

    fn summary(&self, filter: impl Fn(bool) -> bool) -> Option<Summary> {
        let mut ns: Vec<u64> =
            self.0.iter().filter(|(_, allowed)| filter(*allowed)).map(|(ns, _)| *ns).collect();
        if ns.is_empty() {
            return None;
        }
        ns.sort_unstable();
        // Nearest rank: the smallest sample with at least p of them at or below it.
        let at = |p: f64| ns[((p * ns.len() as f64).ceil() as usize).clamp(1, ns.len()) - 1];
        Some(Summary {
            calls: ns.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            mean: ns.iter().sum::<u64>() as f64 / ns.len() as f64,
        })
    }
}

struct Summary {
    calls: usize,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    mean: f64,
}

fn duration(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

fn row(name: &str, summary: &Summary) {
    println!(
        "| {name:<44} | {:>7} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} |",
        summary.calls,
        duration(summary.p50 as f64),
        duration(summary.p90 as f64),
        duration(summary.p99 as f64),
        duration(summary.p999 as f64),
        duration(summary.mean),
    );
}

fn header(title: &str) {
    println!();
    println!(
        "| {title:<44} | {:>7} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} |",
        "calls", "p50", "p90", "p99", "p99.9", "mean"
    );
    println!("|{:-<46}|{:->9}|{:->11}|{:->11}|{:->11}|{:->11}|{:->11}|", "", ":", ":", ":", ":", ":", ":");
}

#[derive(Default)]
struct Measured {
    timer: Samples,
    portcullis: Samples,
    portcullis_full: Samples,
    portcullis_repeated: Samples,
    cedar: Samples,
    casbin: Samples,
    effective_permissions: Samples,
    assignment_add: Samples,
    assignment_remove: Samples,
    member_add: Samples,
    member_remove: Samples,
}

fn measure(engines: &mut Engines, plan: &Plan) -> Measured {
    let mut out = Measured::default();
    let units = vec![(); 1024];
    let effective_requests = engines.effective_permission_requests();
    let memberships = engines.new_memberships(plan.other.max(1));
    let new_assignments: Vec<_> = (0..plan.other.max(1)).map(|k| engines.new_assignment(k)).collect();
    let expected = engines.expected.clone();
    let full_expected = engines.full_expected.clone();
    let comparable = |at: usize| expected[at];
    let full = |at: usize| full_expected[at];
    let no_decision = |_| false;

    let mut timer = Cycle::new(&units);
    let mut portcullis = Cycle::new(&engines.portcullis_requests);
    let mut portcullis_full = Cycle::new(&engines.portcullis_full_requests);
    let mut portcullis_repeated = Cycle::new(&engines.portcullis_requests);
    let mut cedar = Cycle::new(&engines.cedar_requests);
    let mut casbin = Cycle::new(&engines.casbin_requests);
    let mut effective = Cycle::new(&effective_requests);

    for round in 0..plan.warm_up_rounds + plan.rounds {
        if round == plan.warm_up_rounds {
            out = Measured::default();
        }
        out.timer.time(&mut timer, plan.other, &no_decision, |&()| ());
        out.portcullis.time(&mut portcullis, plan.portcullis, &comparable, |r| {
            portcullis_engine::check(&engines.portcullis, r)
        });
        out.cedar.time(&mut cedar, plan.cedar, &comparable, |r| cedar_engine::check(&engines.cedar, r));
        out.portcullis_full.time(&mut portcullis_full, plan.portcullis, &full, |r| {
            portcullis_engine::check(&engines.portcullis_full, r)
        });
        out.portcullis_repeated.time_repeated(&mut portcullis_repeated, plan.other, &comparable, |r| {
            portcullis_engine::check(&engines.portcullis, r)
        });
        out.casbin.time(&mut casbin, plan.casbin, &comparable, |r| casbin_engine::check(&engines.casbin, r));
        out.effective_permissions.time(&mut effective, plan.other, &no_decision, |(principal, scope)| {
            engines.portcullis_full.effective_permissions(principal, scope, NOW).len()
        });
    }

    // Changes last: they need the index mutably. Each is undone, and both
    // halves are timed, so the index ends as it began.
    let mut changes = Cycle::new(&new_assignments);
    let mut members = Cycle::new(&memberships);
    for round in 0..plan.warm_up_rounds + plan.rounds {
        if round == plan.warm_up_rounds {
            out.assignment_add = Samples::default();
            out.assignment_remove = Samples::default();
            out.member_add = Samples::default();
            out.member_remove = Samples::default();
        }
        let index = &mut engines.portcullis_full;
        for _ in 0..plan.other {
            let assignment = changes.next().1.clone();
            let id = assignment.id.clone();
            out.assignment_add.time_once(|| index.apply_assignment(black_box(assignment)));
            out.assignment_remove.time_once(|| index.delete_assignment(black_box(&id)));
        }
        for _ in 0..plan.other {
            let (_, (group, user)) = members.next();
            let (group, user) = (black_box(group.as_str()), black_box(user.as_str()));
            out.member_add.time_once(|| index.add_member(group, user));
            out.member_remove.time_once(|| index.remove_member(group, user));
        }
    }
    out
}

fn main() {
    let benchmarking = support::benchmarking();
    let mut engines = support::load(support::shape());
    let queries = engines.expected.len();
    let plan = if benchmarking { Plan::benchmark(queries) } else { Plan::smoke(queries) };

    let started = Instant::now();
    let measured = measure(&mut engines, &plan);
    eprintln!("measured in {:.1?}", started.elapsed());
    engines.assert_agreement();

    if !benchmarking {
        println!("smoke run on a small tenant: these figures say nothing; use `cargo bench`");
    }
    let any = |_: bool| true;
    header("check (per call)");
    let rows = [
        ("timer around an empty call", &measured.timer),
        ("portcullis", &measured.portcullis),
        ("portcullis, full semantics", &measured.portcullis_full),
        ("portcullis, query asked just before", &measured.portcullis_repeated),
        ("cedar", &measured.cedar),
        ("casbin", &measured.casbin),
    ];
    for (name, samples) in rows {
        if let Some(summary) = samples.summary(any) {
            row(name, &summary);
        }
    }
    header("check by decision");
    for (name, samples) in &rows[1..] {
        for (decision, allowed) in [("allowed", true), ("denied", false)] {
            if let Some(summary) = samples.summary(|a| a == allowed) {
                row(&format!("{name}, {decision}"), &summary);
            }
        }
    }
    header("portcullis, other operations");
    for (name, samples) in [
        ("effective_permissions", &measured.effective_permissions),
        ("apply_assignment (new)", &measured.assignment_add),
        ("delete_assignment", &measured.assignment_remove),
        ("add_member", &measured.member_add),
        ("remove_member", &measured.member_remove),
    ] {
        if let Some(summary) = samples.summary(any) {
            row(name, &summary);
        }
    }

    let (Some(portcullis), Some(cedar), Some(casbin)) =
        (measured.portcullis.summary(any), measured.cedar.summary(any), measured.casbin.summary(any))
    else {
        return;
    };
    let casbin_ratio = casbin.p50 as f64 / portcullis.p50 as f64;
    let cedar_ratio = cedar.p50 as f64 / portcullis.p50 as f64;
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!();
    println!(
        "ratio of medians: casbin / portcullis = {casbin_ratio:.0}x, cedar / portcullis = {cedar_ratio:.0}x"
    );
    println!(
        "ratio of means:   casbin / portcullis = {:.0}x, cedar / portcullis = {:.0}x",
        casbin.mean / portcullis.mean,
        cedar.mean / portcullis.mean
    );
    if !benchmarking {
        // The targets are about the large tenant in release.
        return;
    }
    println!("targets:");
    println!(
        "  check p50 <= 300 ns: {} ({})",
        verdict(portcullis.p50 <= 300),
        duration(portcullis.p50 as f64)
    );
    println!(
        "  check p99 <= 2 µs: {} ({})",
        verdict(portcullis.p99 <= 2_000),
        duration(portcullis.p99 as f64)
    );
    println!("  >= 10x faster than casbin: {} ({casbin_ratio:.0}x)", verdict(casbin_ratio >= 10.0));
    println!("  >= 50x faster than cedar: {} ({cedar_ratio:.0}x)", verdict(cedar_ratio >= 50.0));
}
