//! The process's own CPU time, memory and start time, read from `/proc` when asked (each
//! scrape of `/metrics`).
//!
//! Owns: parsing `/proc/self/stat` and the boot time in `/proc/stat`. Must not: register
//! metrics (`metrics/process.rs` records what this reads) or keep anything between reads.
//! Descriptors are `descriptors.rs`'s.

use std::io::{Error, ErrorKind};

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// User and system CPU time consumed, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Reads the process's resources now.
pub fn read() -> std::io::Result<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let boot = boot_time(&std::fs::read_to_string("/proc/stat")?)?;
    parse_stat(
        &stat,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
        boot,
    )
}

/// The boot time (`btime`, seconds since the epoch) from the text of `/proc/stat`.
fn boot_time(proc_stat: &str) -> std::io::Result<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| invalid("/proc/stat has no btime line"))
}

/// The sample in the text of `/proc/self/stat` (proc(5)), with the clock ticks per second,
/// the page size and the boot time it needs to turn ticks and pages into seconds and bytes.
fn parse_stat(stat: &str, ticks: u64, page: u64, boot: u64) -> std::io::Result<Sample> {
    // The command name, field 2, is in parentheses and may hold spaces and parentheses
    // itself: the fields that follow start after the last `)`.
    let (_, rest) = stat
        .rsplit_once(')')
        .ok_or_else(|| invalid("no command name in /proc/self/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state): field n is `fields[n - 3]`.
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid(format!("field {n} of /proc/self/stat is missing")))
    };
    let ticks = ticks.max(1) as f64;
    Ok(Sample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        resident_bytes: field(24)?.saturating_mul(page),
        virtual_bytes: field(23)?,
        start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
    })
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line (a `cat` run), with the command name made awkward.
    const STAT: &str = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 75 0 0 20 0 1 0 \
        360000 8507392 512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn fields_are_counted_after_the_command_name() {
        let s = parse_stat(STAT, 100, 4096, 1_700_000_000).unwrap();
        assert_eq!(s.cpu_seconds, 3.25); // (250 + 75) / 100
        assert_eq!(s.resident_bytes, 512 * 4096);
        assert_eq!(s.virtual_bytes, 8_507_392);
        assert_eq!(s.start_time_seconds, 1_700_003_600.0); // boot + 360000 / 100
    }

    #[test]
    fn a_truncated_line_is_an_error_not_a_zero() {
        let cut = &STAT[..STAT.find(" 250 ").unwrap()];
        let e = parse_stat(cut, 100, 4096, 0).unwrap_err();
        assert!(e.to_string().contains("field 14"), "{e}");
        assert!(parse_stat("4242 no-parenthesis S 1", 100, 4096, 0).is_err());
    }

    #[test]
    fn boot_time_comes_from_btime() {
        let text = "cpu  1 2 3\nintr 5\nbtime 1699999999\nprocesses 9\n";
        assert_eq!(boot_time(text).unwrap(), 1_699_999_999);
        assert!(boot_time("cpu 1 2 3\n").is_err());
    }

    #[test]
    fn this_process_reads_sensibly() {
        let s = read().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes,
            "{s:?}"
        );
        // Started before now, and not before this machine booted a year ago or so.
        assert!(s.start_time_seconds <= now + 1.0, "{s:?}");
        assert!(s.start_time_seconds > now - 400.0 * 86_400.0, "{s:?}");
        assert!(s.cpu_seconds >= 0.0);
    }
}
