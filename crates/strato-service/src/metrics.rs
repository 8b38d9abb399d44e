//! The service's Prometheus metrics: model cache, embedding batches, job durations. `/metrics` renders them with
//! the HTTP layer's own and the queue depth read from the store at scrape time.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Metric handles; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// Where they are registered.
    pub registry: Registry,
    /// Classifier cache lookups, by `result` (hit, miss).
    pub model_cache: IntCounterVec,
    /// Classifiers loaded from storage.
    pub model_loads: IntCounter,
    /// Texts per embedding call (cache misses only).
    pub embedding_batch: Histogram,
    /// Embedding cache lookups per text, by `result` (hit, miss).
    pub embedding_cache: IntCounterVec,
    /// Job attempt durations, by `kind` and `outcome` (ok, error).
    pub job_duration: HistogramVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Names and labels are constants: a failure here is a bug caught by the first test that builds a service.
    r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let model_cache = must(IntCounterVec::new(
            Opts::new("strato_model_cache_lookups_total", "Classifier cache lookups"),
            &["result"],
        ));
        let model_loads = must(IntCounter::new("strato_model_loads_total", "Classifiers loaded from storage"));
        let embedding_batch = must(Histogram::with_opts(
            HistogramOpts::new("strato_embedding_batch_size", "Texts per embedding call")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0]),
        ));
        let embedding_cache = must(IntCounterVec::new(
            Opts::new("strato_embedding_cache_lookups_total", "Embedding cache lookups, one per text"),
            &["result"],
        ));
        let job_duration = must(HistogramVec::new(
            HistogramOpts::new("strato_job_duration_seconds", "Job attempt durations")
                .buckets(vec![0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0]),
            &["kind", "outcome"],
        ));
        for c in [
            Box::new(model_cache.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(model_loads.clone()),
            Box::new(embedding_batch.clone()),
            Box::new(embedding_cache.clone()),
            Box::new(job_duration.clone()),
        ] {
            must(registry.register(c));
        }
        Self { registry, model_cache, model_loads, embedding_batch, embedding_cache, job_duration }
    }
}

impl Metrics {
    /// The job layer that times every attempt into `strato_job_duration_seconds`.
    pub fn job_timing(
        &self,
    ) -> strato_jobs::TimingLayer<impl Fn(&strato_types::JobKind, &'static str, std::time::Duration) + Clone> {
        let h = self.job_duration.clone();
        strato_jobs::TimingLayer(move |kind: &strato_types::JobKind, outcome: &'static str, d: std::time::Duration| {
            h.with_label_values(&[kind.as_str(), outcome]).observe(d.as_secs_f64())
        })
    }
}
