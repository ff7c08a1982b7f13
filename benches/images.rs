//! Placeholder until the image benchmark lands (issue #6).
fn main() {}
