//! Fault injection for the emulators (in progress).
