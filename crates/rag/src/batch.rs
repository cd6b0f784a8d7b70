//! Batching for the worker threads that serve concurrent requests together (query embedding,
//! search).

use std::sync::mpsc::Receiver;

/// Waits for one item, then takes every item already queued behind it, up to `max` in all.
/// `None` when every sender is gone.
pub fn recv_batch<T>(rx: &Receiver<T>, max: usize) -> Option<Vec<T>> {
    let mut batch = vec![rx.recv().ok()?];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_is_queued_up_to_the_limit() {
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        assert_eq!(recv_batch(&rx, 3), Some(vec![0, 1, 2]));
        assert_eq!(recv_batch(&rx, 3), Some(vec![3, 4]));
        drop(tx);
        assert_eq!(recv_batch(&rx, 3), None);
    }
}
