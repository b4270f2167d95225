//! Placeholder until the validation bench lands (the validation engineer replaces this file).
fn main() {}
