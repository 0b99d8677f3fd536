//! What operators run against the archive: [`replay`] (finish quarantined and raw items with
//! the keys now configured) and [`report`] (what the archive holds).

pub mod replay;
pub mod report;
