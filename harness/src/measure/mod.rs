//! Measurement: timing loops and statistics, and the system information
//! recorded beside every figure; energy meters (`energy`).

pub mod bandwidth;
pub mod energy;
pub mod roofline;
pub mod stats;
pub mod system;

pub use stats::{time_interleaved, time_op, Stats, TimingPlan};
pub use system::SystemInfo;
