//! The two deployments the suite runs on: embedded (SQLite + a local blob directory) and shared (PostgreSQL +
//! S3). Shared needs `STRATO_TEST_DATABASE_URL` and a moto server (`STRATO_TEST_MOTO_SERVER`); `.ci/run` provides
//! both, and without them the shared variant of each test says SKIPPED and passes.

use std::path::Path;
use std::sync::Arc;

use strato_blob::test_support::MotoServer;
use strato_blob::BlobStore;
use strato_service::{Strato, StratoOptions};
use strato_store::{PgStoreOptions, Store};

/// Where a test's metadata and blobs live.
#[derive(Clone)]
pub enum Backend {
    /// SQLite in the data dir, blobs under it.
    Embedded,
    /// PostgreSQL (a schema of the test's own) and an S3 bucket on moto.
    Shared(Arc<SharedBackend>),
}

pub struct SharedBackend {
    pub store: Store,
    pub blobs: BlobStore,
    /// `--database-url` for child processes: the test's schema through `search_path`.
    pub database_url: String,
    /// `--storage` for child processes.
    pub storage: String,
    pub moto: parking_lot::Mutex<MotoServer>,
    base_url: String,
    schema: String,
}

impl Backend {
    /// The shared backend, or `None` (after saying why) when the environment lacks PostgreSQL or moto.
    pub async fn shared() -> Option<Self> {
        let Some(url) = std::env::var("STRATO_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
            eprintln!("SKIPPED (PostgreSQL + S3 variant): STRATO_TEST_DATABASE_URL is not set");
            return None;
        };
        let moto = MotoServer::start()?;
        let bucket = "strato-it";
        moto.create_bucket(bucket);
        let prefix = uuid::Uuid::new_v4().simple().to_string();
        let blobs = BlobStore::s3(&moto.s3_options(bucket, Some(&prefix))).expect("S3 blob store");
        let schema = format!("it_{}", uuid::Uuid::new_v4().simple());
        let connect: sqlx::postgres::PgConnectOptions = url.parse().expect("STRATO_TEST_DATABASE_URL");
        let opts = PgStoreOptions { schema: Some(schema.clone()), ..Default::default() };
        let store = Store::connect_with(connect, opts).await.expect("PostgreSQL store");
        let sep = if url.contains('?') { '&' } else { '?' };
        Some(Self::Shared(Arc::new(SharedBackend {
            store,
            blobs,
            database_url: format!("{url}{sep}options[search_path]={schema}"),
            storage: format!("s3://{bucket}/{prefix}"),
            moto: parking_lot::Mutex::new(moto),
            base_url: url,
            schema,
        })))
    }

    /// The service over this backend (the data dir still holds nothing else but what the embedded one keeps).
    pub async fn open(&self, opts: StratoOptions) -> Strato {
        match self {
            Self::Embedded => Strato::open(opts).await.expect("open"),
            Self::Shared(s) => Strato::with_parts(s.store.clone(), s.blobs.clone(), opts).expect("open"),
        }
    }

    /// The metadata store, as another process would open it.
    pub async fn store(&self, data_dir: &Path) -> Store {
        match self {
            Self::Embedded => Store::open_sqlite(&data_dir.join("meta.db")).await.unwrap(),
            Self::Shared(s) => s.store.clone(),
        }
    }

    /// Command-line options and environment for a `strato` child process on this backend.
    pub fn process_args(&self) -> (Vec<String>, Vec<(&'static str, String)>) {
        match self {
            Self::Embedded => (vec![], vec![]),
            Self::Shared(s) => (
                vec!["--database-url".into(), s.database_url.clone(), "--storage".into(), s.storage.clone()],
                s.moto.lock().client_env(),
            ),
        }
    }
}

impl Drop for SharedBackend {
    fn drop(&mut self) {
        // The test's runtime may be gone or busy: drop the schema on a thread with a runtime of its own.
        let (url, sql) = (self.base_url.clone(), format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await.ok()?;
                // This thread blocks the test's runtime while it waits: a transaction that runtime still has open
                // would never end, so give up (leaving the schema) rather than wait forever.
                sqlx::query("SET lock_timeout = '10s'").execute(&mut c).await.ok()?;
                sqlx::query(&sql).execute(&mut c).await.ok()
            })
        })
        .join();
    }
}

/// Runs each listed `async fn(Backend)` test twice: `<name>::embedded` and `<name>::postgres_s3`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn embedded() {
                    super::$name($crate::backend::Backend::Embedded).await
                }

                #[tokio::test]
                async fn postgres_s3() {
                    if let Some(b) = $crate::backend::Backend::shared().await {
                        super::$name(b).await
                    }
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;
