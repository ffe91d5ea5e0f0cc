//! Dynamic batching between the async request handlers and a device thread that owns the
//! models (tch tensors are not `Sync`, so exactly one thread per device touches them).
//!
//! A request is first *admitted* for its images (the bounded queue: at most `capacity` images in
//! the service at once, counted from admission until the answer, so an overloaded service refuses
//! work before spending CPU on decoding it). Its decoded inputs are then *submitted* as jobs; a
//! device thread takes what is waiting, up to `max_batch`, and, while more admitted images are
//! still being decoded, waits at most `max_wait` for them; then it runs the batch and answers every
//! job through its oneshot channel. Jobs whose requester went away (timed out, disconnected) are
//! dropped unrun.
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// How a device thread forms batches.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// The most work units (faces) in one batch.
    pub max_batch: usize,
    /// How long a batch that is not full waits for images still being decoded.
    pub max_wait: Duration,
}

/// One unit of work and where its answer goes.
pub struct Job<I, O> {
    pub input: I,
    /// Work units in the input (faces of an image), counted against `max_batch`.
    pub size: usize,
    reply: oneshot::Sender<O>,
}

/// Why a job could not be submitted.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueClosed;

/// The sending side, shared by every request handler.
pub struct Queue<I, O> {
    tx: Mutex<Option<Sender<Job<I, O>>>>,
    slots: Arc<Semaphore>,
    capacity: usize,
    /// Images admitted but not yet submitted (being read or decoded): what a batch may wait for.
    upstream: Arc<AtomicUsize>,
}

/// Places in the queue held by one request: released when it is dropped (the request answered,
/// failed or abandoned).
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    unsubmitted: usize,
    upstream: Arc<AtomicUsize>,
}

impl Admission {
    /// Marks one of the admitted images as submitted (or given up on).
    fn settle_one(&mut self) {
        if self.unsubmitted > 0 {
            self.unsubmitted -= 1;
            self.upstream.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Marks one admitted image as failed before submission (undecodable, ...).
    pub fn give_up_one(&mut self) {
        self.settle_one();
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.upstream.fetch_sub(self.unsubmitted, Ordering::SeqCst);
    }
}

/// What the device threads read from.
pub struct Inbox<I, O> {
    rx: Receiver<Job<I, O>>,
    upstream: Arc<AtomicUsize>,
}

impl<I, O> Clone for Inbox<I, O> {
    fn clone(&self) -> Self {
        Inbox { rx: self.rx.clone(), upstream: self.upstream.clone() }
    }
}

impl<I, O> Queue<I, O> {
    /// A queue holding at most `capacity` images, and the inbox the device threads read.
    pub fn new(capacity: usize) -> (Queue<I, O>, Inbox<I, O>) {
        // Unbounded channel: admission bounds the live jobs; abandoned ones are dropped unrun.
        let (tx, rx) = crossbeam_channel::unbounded();
        let upstream = Arc::new(AtomicUsize::new(0));
        let queue = Queue { tx: Mutex::new(Some(tx)), slots: Arc::new(Semaphore::new(capacity)), capacity, upstream: upstream.clone() };
        (queue, Inbox { rx, upstream })
    }

    /// Places for `images` images, or `None` when the queue cannot take them now.
    pub fn admit(&self, images: usize) -> Option<Admission> {
        let n = u32::try_from(images).ok()?;
        let permit = self.slots.clone().try_acquire_many_owned(n).ok()?;
        self.upstream.fetch_add(images, Ordering::SeqCst);
        Some(Admission { _permit: permit, unsubmitted: images, upstream: self.upstream.clone() })
    }

    /// Hands one admitted image's input (of `size` work units) to the device threads.
    pub fn submit(&self, admission: &mut Admission, input: I, size: usize) -> Result<oneshot::Receiver<O>, QueueClosed> {
        let (reply, answer) = oneshot::channel();
        let sent = match self.tx.lock().expect("queue lock").as_ref() {
            Some(tx) => tx.send(Job { input, size: size.max(1), reply }).is_ok(),
            None => false,
        };
        admission.settle_one();
        if sent {
            Ok(answer)
        } else {
            Err(QueueClosed)
        }
    }

    /// Images in the service now (admitted and not yet answered).
    pub fn depth(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_full(&self) -> bool {
        self.slots.available_permits() == 0
    }

    /// No more jobs: the device threads finish what is queued and stop.
    pub fn close(&self) {
        self.tx.lock().expect("queue lock").take();
    }
}

/// The device thread's loop: takes batches from `inbox` until the queue is closed and drained.
/// `run` maps a batch's inputs to their outputs, in order; `observe` hears each batch's size in
/// work units and how long `run` took.
pub fn serve_batches<I, O>(
    inbox: Inbox<I, O>,
    policy: BatchPolicy,
    mut run: impl FnMut(Vec<I>) -> Vec<O>,
    mut observe: impl FnMut(usize, Duration),
) {
    let max_batch = policy.max_batch.max(1);
    let live = |j: &Job<I, O>| !j.reply.is_closed();
    loop {
        let Ok(first) = inbox.rx.recv() else { return };
        let mut units = first.size;
        let mut jobs = vec![first];
        let deadline = Instant::now() + policy.max_wait;
        while units < max_batch {
            // Take what is already waiting; wait only while admitted images are still on their way.
            let next = match inbox.rx.try_recv() {
                Ok(j) => Some(j),
                Err(_) if inbox.upstream.load(Ordering::SeqCst) == 0 => None,
                Err(_) => {
                    let slice = Duration::from_micros(200).min(deadline.saturating_duration_since(Instant::now()));
                    if slice.is_zero() {
                        None
                    } else {
                        match inbox.rx.recv_timeout(slice) {
                            Ok(j) => Some(j),
                            Err(RecvTimeoutError::Timeout) => continue,
                            Err(RecvTimeoutError::Disconnected) => None,
                        }
                    }
                }
            };
            let Some(job) = next else { break };
            if live(&job) {
                if units + job.size > max_batch && !jobs.is_empty() {
                    // Too big for this batch: it leads the next one.
                    run_batch(std::mem::take(&mut jobs), &mut run, &mut observe);
                    units = 0;
                }
                units += job.size;
                jobs.push(job);
            }
        }
        jobs.retain(live);
        if !jobs.is_empty() {
            run_batch(jobs, &mut run, &mut observe);
        }
    }
}

fn run_batch<I, O>(jobs: Vec<Job<I, O>>, run: &mut impl FnMut(Vec<I>) -> Vec<O>, observe: &mut impl FnMut(usize, Duration)) {
    let units = jobs.iter().map(|j| j.size).sum();
    let (inputs, replies): (Vec<I>, Vec<oneshot::Sender<O>>) = jobs.into_iter().map(|j| (j.input, j.reply)).unzip();
    let start = Instant::now();
    let outputs = run(inputs);
    observe(units, start.elapsed());
    for (reply, out) in replies.into_iter().zip(outputs) {
        let _ = reply.send(out); // the requester may have gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_batch: usize, wait_ms: u64) -> BatchPolicy {
        BatchPolicy { max_batch, max_wait: Duration::from_millis(wait_ms) }
    }

    #[test]
    fn admission_is_bounded_and_released() {
        let (q, _inbox) = Queue::<u32, u32>::new(3);
        let a = q.admit(2).unwrap();
        assert_eq!(q.depth(), 2);
        assert!(q.admit(2).is_none(), "only one place left");
        let b = q.admit(1).unwrap();
        assert!(q.is_full());
        drop(a);
        assert_eq!(q.depth(), 1);
        drop(b);
        assert_eq!(q.depth(), 0);
        assert!(q.admit(4).is_none(), "more than the capacity is never admitted");
    }

    #[test]
    fn batches_wait_for_admitted_images_and_answer_each_in_order() {
        let (q, inbox) = Queue::<u32, u32>::new(16);
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let worker = std::thread::spawn(move || {
            serve_batches(inbox, policy(4, 2000), |xs| xs.into_iter().map(|x| x * 10).collect(), |n, _| seen.lock().unwrap().push(n))
        });
        // Five images admitted at once: the first batch waits for four of them, the fifth forms a
        // batch of its own.
        let mut adm = q.admit(5).unwrap();
        let answers: Vec<_> = (0..5u32).map(|i| q.submit(&mut adm, i, 1).unwrap()).collect();
        let got: Vec<u32> = answers.into_iter().map(|a| a.blocking_recv().unwrap()).collect();
        assert_eq!(got, vec![0, 10, 20, 30, 40]);
        drop(adm);
        q.close();
        worker.join().unwrap();
        assert_eq!(*sizes.lock().unwrap(), vec![4, 1]);
    }

    #[test]
    fn a_lone_request_does_not_wait_and_abandoned_jobs_are_not_run() {
        let (q, inbox) = Queue::<u32, u32>::new(16);
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let worker = std::thread::spawn(move || {
            serve_batches(inbox, policy(8, 60_000), move |xs| {
                counted.fetch_add(xs.len(), Ordering::SeqCst);
                xs
            }, |_, _| {})
        });
        // Nothing else admitted: answered at once although max_wait is a minute.
        let start = Instant::now();
        let mut adm = q.admit(1).unwrap();
        assert_eq!(q.submit(&mut adm, 7, 1).unwrap().blocking_recv().unwrap(), 7);
        assert!(start.elapsed() < Duration::from_secs(30));
        drop(adm);
        // A job whose requester left before the thread took it is dropped unrun.
        let mut adm = q.admit(2).unwrap();
        let gone = q.submit(&mut adm, 1, 1).unwrap();
        drop(gone);
        let kept = q.submit(&mut adm, 2, 1).unwrap();
        assert_eq!(kept.blocking_recv().unwrap(), 2);
        drop(adm);
        q.close();
        worker.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2, "the abandoned job never ran");
        let mut adm = q.admit(1).unwrap();
        assert_eq!(q.submit(&mut adm, 3, 1).unwrap_err(), QueueClosed);
    }
}
