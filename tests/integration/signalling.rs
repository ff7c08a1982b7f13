//! Video signalling through the gateway (issue #5): filled in with the signalling service.
