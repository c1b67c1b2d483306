//! Exit codes, per the product contract (SPEC §1): every layer reports outcomes in these.

pub const OK: u8 = 0;
pub const STEP_FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const ABORTED: u8 = 3;
pub const INTERRUPTED: u8 = 130;
