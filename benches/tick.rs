//! One tick of the fast path — statvfs of the watched volumes, history update, decide —
//! which runs every `sample.interval` (1 s). The goal is "well under 1 ms".
//!
//! `cargo bench --bench tick`; figures go to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use diskguard::config::Settings;
use diskguard::policy::{State, decide};
use diskguard::sample::{ContainerInfo, ContainerState, FsSampler, History, ImageInfo, Inventory};

fn settings() -> Settings {
    let mut s = Settings::default();
    // Watch a path that exists everywhere; statvfs costs the same on any local fs.
    s.docker.root = std::env::temp_dir();
    s.etcd.data_dir = std::env::temp_dir();
    s
}

/// 1,000 images and 500 containers, the size issue 3 benchmarks inventory at.
fn inventory(now: SystemTime) -> Inventory {
    let images = (0..1000)
        .map(|i| ImageInfo {
            id: format!("sha256:{i:064x}"),
            tags: if i % 10 == 0 {
                vec![]
            } else {
                vec![format!("app{i}:v1")]
            },
            digests: Vec::new(),
            size_bytes: 7_000_000,
            created: now - Duration::from_secs(86_400),
            last_used: now - Duration::from_secs(7_200 + i * 13 % 5_000),
            parent: None,
            labels: BTreeMap::new(),
        })
        .collect();
    let containers = (0..500)
        .map(|i| ContainerInfo {
            id: format!("c{i}"),
            name: format!("/c{i}"),
            image_id: format!("sha256:{:064x}", i * 2),
            state: if i % 3 == 0 {
                ContainerState::Exited
            } else {
                ContainerState::Running
            },
            created: now - Duration::from_secs(90_000),
            finished_at: (i % 3 == 0).then(|| now - Duration::from_secs(20_000)),
            labels: BTreeMap::new(),
            size_rw_bytes: Some(1_000_000),
            log_bytes: Some(10_000),
        })
        .collect();
    Inventory {
        generation: 1,
        images,
        containers,
        build_cache: None,
    }
}

fn tick(c: &mut Criterion) {
    let settings = settings();
    let sampler = FsSampler::new(&settings);
    let mut history = History::new(
        settings.thresholds.forecast_window,
        settings.sample.interval,
    );
    let start = SystemTime::now();
    // A full forecast window of history, as after five minutes of running.
    for s in 0..history.capacity() as u64 {
        history.record(&sampler.sample(start + Duration::from_secs(s)));
    }
    let mut state = State::default();
    let mut now = start + Duration::from_secs(history.capacity() as u64);
    c.bench_function(
        "tick: sample + record + decide (2 volumes, full history)",
        |b| {
            b.iter(|| {
                now += Duration::from_secs(1);
                let snapshot = sampler.sample(now);
                history.record(&snapshot);
                let plan = decide(&snapshot, &history, &state, &settings, now);
                state = plan.next;
            })
        },
    );

    // The prune path: the same tick when the ladder has to be built from a big inventory.
    let mut prune = settings.clone();
    prune.thresholds.prune_start = 0.5;
    prune.thresholds.prune_target = 0.1;
    prune.thresholds.recover = 0.2;
    let mut snapshot = sampler.sample(now);
    snapshot.inventory = Some(std::sync::Arc::new(inventory(now)));
    c.bench_function(
        "decide at prune level (1,000 images, 500 containers)",
        |b| b.iter(|| decide(&snapshot, &history, &State::default(), &prune, now)),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(50);
    targets = tick
}
criterion_main!(benches);
