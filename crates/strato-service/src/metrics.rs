//! The service's Prometheus metrics: model cache, embedding batches, job durations. `/metrics` renders them with
//! the HTTP layer's own and the queue depth read from the store at scrape time.

use std::time::Instant;

use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use strato_jobs::{JobContext, JobError, JobHandler};
use strato_types::JobRecord;

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

/// Times every attempt of the wrapped handler.
pub(crate) struct Timed<H> {
    pub inner: H,
    pub metrics: Metrics,
}

#[async_trait]
impl<H: JobHandler> JobHandler for Timed<H> {
    async fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        let t0 = Instant::now();
        let out = self.inner.run(job, ctx).await;
        let outcome = if out.is_ok() { "ok" } else { "error" };
        self.metrics.job_duration.with_label_values(&[job.kind.as_str(), outcome]).observe(t0.elapsed().as_secs_f64());
        out
    }
}

impl crate::Strato {
    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Jobs per kind and status, for the queue-depth gauge.
    pub async fn job_counts(&self) -> crate::Result<Vec<(String, String, i64)>> {
        self.inner.store.job_counts().await.map_err(crate::storage("counting jobs failed"))
    }
}
