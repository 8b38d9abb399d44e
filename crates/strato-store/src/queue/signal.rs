//! Wake-ups for this process's idle workers, one channel per queue: a wake-up meant for one queue is never taken
//! (and lost) by an idle worker of another, which would leave the job to the safety poll.

use std::collections::HashMap;
use std::sync::Arc;

use strato_types::QueueName;
use tokio::sync::Notify;

/// This process's job wake-ups, by queue.
#[derive(Default)]
pub struct JobSignal {
    queues: parking_lot::RwLock<HashMap<QueueName, Arc<Notify>>>,
}

impl JobSignal {
    /// The channel the idle workers of `queue` wait on (created on first use).
    pub fn queue(&self, queue: &QueueName) -> Arc<Notify> {
        if let Some(n) = self.queues.read().get(queue) {
            return n.clone();
        }
        self.queues.write().entry(queue.clone()).or_default().clone()
    }

    /// Wakes one idle worker of `queue`; a queue no worker here waits on is left alone.
    pub fn wake(&self, queue: &QueueName) {
        if let Some(n) = self.queues.read().get(queue) {
            n.notify_one();
        }
    }

    /// Wakes one idle worker of every queue: for events whose queue is not known (another process's write, a
    /// freed key, a reconnected listener).
    pub fn wake_all(&self) {
        for n in self.queues.read().values() {
            n.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn woken(n: Arc<Notify>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), n.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn a_wake_up_reaches_only_its_own_queue() {
        let s = JobSignal::default();
        let (default, media) = (QueueName::new("default"), QueueName::new("media"));
        let (d, m) = (s.queue(&default), s.queue(&media));
        s.wake(&media);
        assert!(!woken(d.clone()).await, "a media wake-up woke a default worker");
        assert!(woken(m.clone()).await);
        s.wake(&QueueName::new("nobody-here"));
        s.wake_all();
        assert!(woken(d).await && woken(m).await);
    }
}
