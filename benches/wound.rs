//! Placeholder until the wound benchmark lands (issue #7).
fn main() {}
