//! Criterion benchmarks of the access index on a large synthetic tenant,
//! with casbin-rs and Cedar answering the same queries on the same tenant.
//!
//! `cargo bench -p portcullis-benches --bench access_index`; under `cargo
//! test -p portcullis-benches` each benchmark runs once on a small tenant.
//! Every time is per call: one query, one `effective_permissions`, or one
//! change and its undoing.
//! See BENCHMARKS.md for the figures.

// Each bench target compiles the support module whole and uses part of it.
#[allow(dead_code)]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use support::tenant::NOW;
use support::{Engines, casbin_engine, cedar_engine, portcullis_engine};

/// Hands out the items of a slice one at a time, round and round.
struct Cycle<'a, T> {
    items: &'a [T],
    next: usize,
}

impl<'a, T> Cycle<'a, T> {
    fn new(items: &'a [T]) -> Self {
        Cycle { items, next: 0 }
    }

    fn next(&mut self) -> &'a T {
        let item = &self.items[self.next];
        self.next += 1;
        if self.next == self.items.len() {
            self.next = 0;
        }
        item
    }
}

fn check(c: &mut Criterion, engines: &Engines) {
    let mut group = c.benchmark_group("check");
    group.bench_function("portcullis", |b| {
        let mut requests = Cycle::new(&engines.portcullis_requests);
        b.iter(|| portcullis_engine::check(&engines.portcullis, black_box(requests.next())))
    });
    group.bench_function("portcullis_full_semantics", |b| {
        let mut requests = Cycle::new(&engines.portcullis_full_requests);
        b.iter(|| portcullis_engine::check(&engines.portcullis_full, black_box(requests.next())))
    });
    // The other two are slower by orders of magnitude: fewer, longer samples.
    group.sample_size(30).measurement_time(Duration::from_secs(10));
    group.bench_function("cedar", |b| {
        let mut requests = Cycle::new(&engines.cedar_requests);
        b.iter(|| cedar_engine::check(&engines.cedar, black_box(requests.next())))
    });
    group.bench_function("casbin", |b| {
        let mut requests = Cycle::new(&engines.casbin_requests);
        b.iter(|| casbin_engine::check(&engines.casbin, black_box(requests.next())))
    });
    group.finish();
}

fn effective_permissions(c: &mut Criterion, engines: &Engines) {
    let requests = engines.effective_permission_requests();
    let mut group = c.benchmark_group("effective_permissions");
    group.bench_function("portcullis", |b| {
        let mut requests = Cycle::new(&requests);
        b.iter(|| {
            let (principal, scope) = black_box(requests.next());
            engines.portcullis_full.effective_permissions(principal, scope, NOW)
        })
    });
    group.finish();
}

/// One change and its undoing per iteration, so the index is the same
/// before and after each sample. The changes are built (allocated) before
/// the clock starts.
fn apply_change(c: &mut Criterion, engines: &mut Engines) {
    const BATCH: u64 = 1024;
    let memberships = engines.new_memberships(BATCH as usize);
    let mut group = c.benchmark_group("apply_change");
    group.bench_function("assignment", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iterations {
                let batch = (iterations - done).min(BATCH);
                let changes: Vec<_> = (done..done + batch)
                    .map(|k| {
                        let assignment = engines.new_assignment(k as usize);
                        let id = assignment.id.clone();
                        (assignment, id)
                    })
                    .collect();
                let index = &mut engines.portcullis_full;
                let started = Instant::now();
                for (assignment, id) in changes {
                    index.apply_assignment(black_box(assignment));
                    index.delete_assignment(black_box(&id));
                }
                elapsed += started.elapsed();
                done += batch;
            }
            elapsed
        })
    });
    group.bench_function("membership", |b| {
        let mut memberships = Cycle::new(&memberships);
        let index = &mut engines.portcullis_full;
        b.iter(|| {
            let (group, user) = black_box(memberships.next());
            index.add_member(group, user);
            index.remove_member(group, user);
        })
    });
    group.finish();
}

fn access_index(c: &mut Criterion) {
    let mut engines = support::load(support::shape());
    check(c, &engines);
    effective_permissions(c, &engines);
    apply_change(c, &mut engines);
    // The changes were all undone: the index still answers as before.
    engines.assert_agreement();
}

criterion_group!(benches, access_index);
criterion_main!(benches);
