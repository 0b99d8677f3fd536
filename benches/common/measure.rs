//! What every bench binary measures with: the process's CPU time and `openssl speed rsa2048`.

use std::time::Duration;

/// User plus system CPU time of the whole process so far.
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `openssl speed rsa2048` private operations (sign) per second, one core, run for `seconds`.
pub fn openssl_speed_rsa2048(seconds: u64) -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("rsa 2048 bits") || l.starts_with("rsa  2048 bits"))?;
    // "rsa 2048 bits 0.000334s 0.000018s   2991.0  55333.0": sign/s is the next-to-last column.
    let nums: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    nums.len().checked_sub(2).map(|i| nums[i])
}
