//! A W&B-compatible emulator for tests and demos.
