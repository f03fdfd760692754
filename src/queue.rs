//! The bounded queue between the windower and the inference thread.
//!
//! Live capture cannot wait for inference: if it falls behind, the oldest waiting window is
//! dropped (and counted) so what runs is always the most recent audio and video, and memory
//! stays bounded. A replay that is not paced has nothing to lose by waiting, so there the
//! producer waits for room instead ([`Overflow::Wait`]) and every window runs.
//!
//! The producer is an async task and the consumer a plain thread (inference blocks a core),
//! hence a mutex with a condition variable for the consumer and a `Notify` for the producer.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    DropOldest,
    Wait,
}

struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
}

pub struct WindowQueue<T> {
    inner: Mutex<Inner<T>>,
    items: Condvar,
    space: Notify,
    capacity: usize,
    overflow: Overflow,
}

impl<T> WindowQueue<T> {
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        WindowQueue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                closed: false,
            }),
            items: Condvar::new(),
            space: Notify::new(),
            capacity: capacity.max(1),
            overflow,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // A panic while holding the lock leaves plain data behind: keep going with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an item; returns how many old items were dropped to make room (0 or 1).
    pub async fn push(&self, item: T) -> usize {
        let mut item = Some(item);
        loop {
            let notified = self.space.notified();
            {
                let mut g = self.lock();
                if g.items.len() < self.capacity || self.overflow == Overflow::DropOldest {
                    let dropped = if g.items.len() >= self.capacity {
                        g.items.pop_front();
                        1
                    } else {
                        0
                    };
                    if let Some(it) = item.take() {
                        g.items.push_back(it);
                    }
                    self.items.notify_one();
                    return dropped;
                }
            }
            notified.await;
        }
    }

    /// Waits for at least one item and takes up to `max`; None when closed and drained.
    pub fn pop_batch(&self, max: usize) -> Option<Vec<T>> {
        let mut g = self.lock();
        loop {
            if !g.items.is_empty() {
                let n = g.items.len().min(max.max(1));
                let batch: Vec<T> = g.items.drain(..n).collect();
                drop(g);
                self.space.notify_one();
                return Some(batch);
            }
            if g.closed {
                return None;
            }
            g = self.items.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// No more items will come; the consumer drains what is left, then gets None.
    pub fn close(&self) {
        self.lock().closed = true;
        self.items.notify_all();
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let q = WindowQueue::new(3, Overflow::DropOldest);
        let dropped: usize = block_on(async {
            let mut d = 0;
            for i in 0..7 {
                d += q.push(i).await;
            }
            d
        });
        assert_eq!(dropped, 4);
        assert_eq!(q.pop_batch(2), Some(vec![4, 5]));
        q.close();
        assert_eq!(q.pop_batch(8), Some(vec![6]), "closing drains what is left");
        assert_eq!(q.pop_batch(8), None);
    }

    #[test]
    fn wait_mode_loses_nothing() {
        let q = std::sync::Arc::new(WindowQueue::new(2, Overflow::Wait));
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(b) = q.pop_batch(3) {
                    assert!(b.len() <= 2, "never more than the capacity waits");
                    got.extend(b);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                got
            })
        };
        let dropped = block_on(async {
            let mut d = 0;
            for i in 0..50 {
                d += q.push(i).await;
            }
            q.close();
            d
        });
        assert_eq!(dropped, 0);
        assert_eq!(consumer.join().unwrap(), (0..50).collect::<Vec<_>>());
    }
}
