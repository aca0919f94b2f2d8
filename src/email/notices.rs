//! Transitional (issue #12, part 3): the notices moved to `crate::app::notices`. The payouts
//! and ambassadors flows still in `store` (moving on their own branch) reach them by this old
//! path until the merge; the lead removes this file and its `mod` line then.

pub use crate::app::notices::*;
