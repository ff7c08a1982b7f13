//! The raw-bytes codec, shared with the kit.

pub use telehealth_kit::raw_codec::RawCodec;
