//! Streaming calls open per subject.
//!
//! A streaming call (a watch, video signalling, an upload or a download) may last hours, and
//! holds memory and a task in the gateway and in a service for all that time. The per-subject
//! rate limit only counts how often calls start; this counts how many are open, over all the
//! subject's connections and devices, and refuses one more past the cap with
//! `RESOURCE_EXHAUSTED` until one ends.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Open streaming calls per subject.
pub struct SubjectStreams {
    max: u32,
    open: Mutex<HashMap<String, u32>>,
}

/// One open streaming call; the count goes down when it is dropped (with the response body).
pub struct StreamSlot {
    streams: Arc<SubjectStreams>,
    subject: String,
}

impl SubjectStreams {
    /// At most `max` streaming calls open per subject.
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(SubjectStreams {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more streaming call of `subject`, or says the cap when it is reached.
    pub fn open(self: &Arc<Self>, subject: &str) -> Result<StreamSlot, u32> {
        // A poisoned lock must not take the gateway down: the call is let through uncounted.
        if let Ok(mut open) = self.open.lock() {
            let count = open.entry(subject.to_owned()).or_insert(0);
            if *count >= self.max {
                return Err(self.max);
            }
            *count += 1;
        }
        Ok(StreamSlot {
            streams: self.clone(),
            subject: subject.to_owned(),
        })
    }

    /// Streaming calls `subject` has open.
    pub fn count(&self, subject: &str) -> u32 {
        self.open
            .lock()
            .ok()
            .and_then(|open| open.get(subject).copied())
            .unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.streams.open.lock()
            && let Some(count) = open.get_mut(&self.subject)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_holds_at_most_its_cap_and_gets_a_slot_back_when_one_ends() {
        let streams = SubjectStreams::new(2);
        let first = streams.open("dr-a").expect("first");
        let _second = streams.open("dr-a").expect("second");
        assert_eq!(streams.open("dr-a").err(), Some(2), "third refused");
        let _other = streams.open("dr-b").expect("others are counted apart");
        drop(first);
        let _third = streams.open("dr-a").expect("a slot came back");
        assert_eq!(streams.count("dr-a"), 2);
    }
}
