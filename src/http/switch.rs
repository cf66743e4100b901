//! A server-wide switch that stays on once flipped (stopping; cutting), which every
//! connection looks at each time it wakes.
//!
//! A `CancellationToken` alone would do, but every poll of its wait locks two mutexes (the
//! token's, then its `Notify`'s list of waiters). A lane connection looked at two tokens on
//! each request: that was about 3 % of the server's user time on 4 KiB downloads at c=32
//! (docs/benchmarks.md, the sixteenth pass). A [`Flipped`] reads one flag that is written
//! once, and registers with the token only when first polled, or polled from another task:
//! the registration stays in the token's list, so flipping still wakes the task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Off until flipped, then on for good. Only its owner flips it; connections watch it
/// through [`Lookout`]s.
#[derive(Default)]
pub struct Switch {
    on: Arc<AtomicBool>,
    /// Cancelled only by [`Switch::flip`], after `on` is set: a task its lookouts' tokens wake
    /// finds `on` set.
    token: CancellationToken,
}

impl Switch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn flip(&self) {
        self.on.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// A view of the switch with a waiter list of its own. Each event loop's connections wait
    /// on a lookout of their own, so the two loops never lock the same list.
    pub fn lookout(&self) -> Lookout {
        Lookout {
            on: self.on.clone(),
            token: self.token.child_token(),
        }
    }
}

/// Sees a [`Switch`] go on.
#[derive(Clone)]
pub struct Lookout {
    on: Arc<AtomicBool>,
    /// A child of the switch's token, cancelled with it.
    token: CancellationToken,
}

impl Lookout {
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Resolves once the switch is on.
    pub fn flipped(&self) -> Flipped<'_> {
        Flipped {
            on: &self.on,
            wait: self.token.cancelled(),
            waker: None,
        }
    }
}

pin_project! {
    /// The wait of [`Lookout::flipped`].
    pub struct Flipped<'a> {
        on: &'a AtomicBool,
        #[pin]
        wait: WaitForCancellationFuture<'a>,
        // The waker the token holds for this wait, once it holds one.
        waker: Option<Waker>,
    }
}

impl Future for Flipped<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.on.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let polled = this.wait.poll(cx);
        if polled.is_pending() {
            *this.waker = Some(cx.waker().clone());
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// A wait polled many times while the switch is off still wakes its task when the switch
    /// is flipped from another thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_polled_often_wakes_on_the_flip() {
        let switch = Switch::new();
        let lookout = switch.lookout();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let waiter = tokio::spawn(async move {
            let flipped = lookout.flipped();
            tokio::pin!(flipped);
            let mut wakes = 0u32;
            loop {
                tokio::select! {
                    biased;
                    () = &mut flipped => return (wakes, lookout.is_on()),
                    // Other wakes, each polling the wait again.
                    Some(()) = rx.recv() => wakes += 1,
                }
            }
        });
        for _ in 0..100 {
            tx.send(()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        switch.flip();
        let (wakes, on) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the flip wakes the waiting task")
            .unwrap();
        assert_eq!(wakes, 100);
        assert!(on);
    }

    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polled with another waker (from another task), the wait hands the token that waker, so
    /// the flip wakes whoever waits now.
    #[test]
    fn the_flip_wakes_the_waker_last_polled_with() {
        let switch = Switch::new();
        let lookout = switch.lookout();
        let (a, b) = (Arc::new(Count(0.into())), Arc::new(Count(0.into())));
        let (wake_a, wake_b) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut flipped = Box::pin(lookout.flipped());
        for waker in [&wake_a, &wake_a, &wake_b, &wake_b] {
            let polled = flipped.as_mut().poll(&mut Context::from_waker(waker));
            assert!(polled.is_pending());
        }
        switch.flip();
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(a.0.load(Ordering::SeqCst), 0);
        assert!(
            flipped
                .as_mut()
                .poll(&mut Context::from_waker(&wake_b))
                .is_ready()
        );
        // A wait made after the flip is done at once.
        assert!(lookout.is_on());
        let mut late = Box::pin(lookout.flipped());
        assert!(
            late.as_mut()
                .poll(&mut Context::from_waker(&wake_a))
                .is_ready()
        );
    }
}
