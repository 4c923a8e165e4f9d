//! pglab's own health metrics, on a private registry.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::time::Duration;

pub struct Health {
    pub registry: Registry,
    round_seconds: Histogram,
    evaluated: IntGauge,
    skipped: IntGauge,
    rounds_failed: IntCounter,
    check_failures: IntCounterVec,
}

impl Health {
    pub fn new() -> Self {
        let registry = Registry::new();
        let round_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "pglab_scoring_round_duration_seconds",
                "Duration of a scoring round.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        )
        .expect("valid metric");
        let evaluated = IntGauge::new(
            "pglab_scoring_databases_evaluated",
            "Databases evaluated in the latest round (they changed).",
        )
        .expect("valid metric");
        let skipped = IntGauge::new(
            "pglab_scoring_databases_skipped",
            "Databases not evaluated in the latest round (unchanged, result kept).",
        )
        .expect("valid metric");
        let rounds_failed = IntCounter::new(
            "pglab_scoring_rounds_failed_total",
            "Scoring rounds that failed as a whole.",
        )
        .expect("valid metric");
        let check_failures = IntCounterVec::new(
            Opts::new("pglab_check_failures_total", "Failed checks by class: wrong, timeout, lock_timeout, too_many_rows, error, broken_check, unreachable."),
            &["reason"],
        )
        .expect("valid metric");
        let build = IntGaugeVec::new(
            Opts::new("pglab_build_info", "pglab's version; always 1."),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for m in [
            Box::new(round_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(evaluated.clone()),
            Box::new(skipped.clone()),
            Box::new(rounds_failed.clone()),
            Box::new(check_failures.clone()),
            Box::new(build),
        ] {
            registry.register(m).expect("registered once");
        }
        Self {
            registry,
            round_seconds,
            evaluated,
            skipped,
            rounds_failed,
            check_failures,
        }
    }

    pub fn round_done(&self, took: Duration, evaluated: usize, skipped: usize) {
        self.round_seconds.observe(took.as_secs_f64());
        self.evaluated.set(evaluated as i64);
        self.skipped.set(skipped as i64);
    }

    pub fn round_failed(&self) {
        self.rounds_failed.inc();
    }

    pub fn check_failed(&self, class: &str) {
        self.check_failures.with_label_values(&[class]).inc();
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}
