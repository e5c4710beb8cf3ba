//! Answers to clients, handed back to the client threads that wait for them in
//! batches: one wake-up of a client thread per batch, not one per answer.
//!
//! A tokio runtime woken from another thread pays a syscall (its eventfd) for
//! every task woken, and a sleeping thread wakes for each: the store answering
//! 16 applied writes one oneshot at a time cost 16 of each. Here every client
//! thread has an inbox with a drain task of its own; a [`Replies`] batch puts
//! all the answers for one thread in its inbox and wakes the drain task once,
//! which completes the oneshots on that thread (a local wake costs no syscall).
//!
//! Owns: the per-thread inboxes and their drain tasks. Never: holds an answer
//! past the batch it was added to, or loses one. An inbox whose runtime has
//! shut down is bypassed; what was in it is dropped with it, so the waiting
//! side sees its channel closed, not silence.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};

type Delivery = Box<dyn FnOnce() + Send>;

/// One client thread's answers waiting to be completed there.
struct Inbox {
    queue: Mutex<Vec<Delivery>>,
    notify: Notify,
    /// The drain task is running (false once its runtime dropped it).
    draining: AtomicBool,
}

impl Inbox {
    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

thread_local! {
    static THIS_THREAD: RefCell<Option<Arc<Inbox>>> = const { RefCell::new(None) };
}

/// The calling thread's inbox, started on the tokio runtime it runs (`None`
/// outside of one: answers then go straight to their oneshot).
fn this_threads_inbox() -> Option<Arc<Inbox>> {
    THIS_THREAD.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some(inbox) = slot.as_ref().filter(|i| i.is_draining()) {
            return Some(inbox.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let inbox = Arc::new(Inbox { queue: Mutex::new(Vec::new()), notify: Notify::new(), draining: AtomicBool::new(true) });
        runtime.spawn(drain(DrainGuard(inbox.clone())));
        *slot = Some(inbox.clone());
        Some(inbox)
    })
}

/// Marks the inbox bypassed when the drain task is dropped (its runtime shut
/// down), and drops what it still held.
struct DrainGuard(Arc<Inbox>);

impl Drop for DrainGuard {
    fn drop(&mut self) {
        self.0.draining.store(false, Ordering::Release);
        self.0.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

/// The guard comes in made: a task dropped before its first poll still marks
/// the inbox bypassed.
async fn drain(guard: DrainGuard) {
    loop {
        guard.0.notify.notified().await;
        let batch = std::mem::take(&mut *guard.0.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for deliver in batch {
            deliver();
        }
    }
}

/// Where one answer goes: a oneshot, and the inbox of the thread waiting on it.
pub struct Reply<T> {
    tx: oneshot::Sender<T>,
    inbox: Option<Arc<Inbox>>,
}

/// A reply and its receiving end, for an answer the calling thread waits for.
pub fn channel<T>() -> (Reply<T>, oneshot::Receiver<T>) {
    let (tx, rx) = oneshot::channel();
    (Reply { tx, inbox: this_threads_inbox() }, rx)
}

impl<T: Send + 'static> Reply<T> {
    /// Answers at once, alone (for an answer that has no batch to join).
    pub fn send(self, value: T) {
        let _ = self.tx.send(value);
    }

    /// The waiting side gave up.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("batched", &self.inbox.is_some()).finish()
    }
}

/// Answers gathered while handling one batch of work, delivered together by
/// [`Replies::deliver`] (or when dropped).
#[derive(Default)]
pub struct Replies {
    by_inbox: Vec<(Arc<Inbox>, Vec<Delivery>)>,
}

impl Replies {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an answer to the batch (answers at once when its thread has no
    /// working inbox).
    pub fn add<T: Send + 'static>(&mut self, reply: Reply<T>, value: T) {
        let Reply { tx, inbox } = reply;
        let Some(inbox) = inbox.filter(|i| i.is_draining()) else {
            let _ = tx.send(value);
            return;
        };
        let deliver: Delivery = Box::new(move || {
            let _ = tx.send(value);
        });
        // A handful of client threads: a scan beats a map.
        match self.by_inbox.iter_mut().find(|(i, _)| Arc::ptr_eq(i, &inbox)) {
            Some((_, deliveries)) => deliveries.push(deliver),
            None => self.by_inbox.push((inbox, vec![deliver])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_inbox.is_empty()
    }

    /// Hands each thread its answers, with one wake-up each.
    pub fn deliver(&mut self) {
        for (inbox, deliveries) in self.by_inbox.drain(..) {
            let mut queue = inbox.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            queue.extend(deliveries);
            if !inbox.is_draining() {
                // Its runtime shut down since `add` looked: drop them now, so
                // their channels close (the guard may have cleared already).
                queue.clear();
            }
            drop(queue);
            inbox.notify.notify_one();
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.deliver();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_an_answer_goes_straight_to_its_oneshot() {
        let (reply, mut rx) = channel::<u32>();
        assert!(reply.inbox.is_none());
        let mut replies = Replies::new();
        replies.add(reply, 7);
        assert!(replies.is_empty());
        assert_eq!(rx.try_recv().ok(), Some(7));
    }

    #[test]
    fn a_batch_reaches_every_waiting_thread_in_order() {
        // Two client threads, each on a runtime of its own, waiting on answers
        // that one other thread batches.
        let (to_answerer, answers_wanted) = std::sync::mpsc::channel();
        let clients: Vec<_> = (0..2u32)
            .map(|t| {
                let to_answerer = to_answerer.clone();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async move {
                        let mut receivers = Vec::new();
                        for i in 0..5u32 {
                            let (reply, rx) = channel::<u32>();
                            assert!(reply.inbox.is_some());
                            to_answerer.send((reply, t * 100 + i)).unwrap();
                            receivers.push(rx);
                        }
                        drop(to_answerer);
                        let mut got = Vec::new();
                        for rx in receivers {
                            got.push(rx.await.unwrap());
                        }
                        got
                    })
                })
            })
            .collect();
        drop(to_answerer);
        let mut replies = Replies::new();
        for (reply, value) in answers_wanted {
            replies.add(reply, value);
        }
        assert_eq!(replies.by_inbox.len(), 2);
        replies.deliver();
        let mut got: Vec<Vec<u32>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![vec![0, 1, 2, 3, 4], vec![100, 101, 102, 103, 104]]);
    }

    #[test]
    fn an_inbox_whose_runtime_is_gone_is_bypassed_and_a_new_one_started() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (old_reply, _old_rx) = runtime.block_on(async { channel::<u32>() });
        drop(runtime);
        assert!(!old_reply.inbox.as_ref().unwrap().is_draining());
        // The answer still goes through (straight to its oneshot).
        let (tx, mut rx) = oneshot::channel();
        let mut replies = Replies::new();
        replies.add(Reply { tx, inbox: old_reply.inbox.clone() }, 3);
        assert!(replies.is_empty());
        assert_eq!(rx.try_recv().ok(), Some(3));
        // A new runtime on the same thread gets a working inbox.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = runtime.block_on(async {
            let (reply, rx) = channel::<u32>();
            assert!(reply.inbox.as_ref().unwrap().is_draining());
            let mut replies = Replies::new();
            replies.add(reply, 9);
            replies.deliver();
            rx.await.unwrap()
        });
        assert_eq!(got, 9);
    }
}
