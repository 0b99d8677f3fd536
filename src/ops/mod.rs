//! What operators run against the archive: [`replay`] (finish quarantined and raw items with
//! the keys now configured), [`report`] (what the archive holds) and [`attendance`] (who
//! attended which meeting, when, for how long).

pub(crate) mod attendance;
pub mod replay;
pub mod report;
