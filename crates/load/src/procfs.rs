//! Memory and CPU time of a process, from Linux's /proc (the benchmark's machine).

/// VmRSS and VmHWM (peak RSS) in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

/// Memory of `pid` ("self" for this process); None if it cannot be read (no such
/// process, not Linux).
pub fn memory(pid: &str) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status)
}

fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some(Memory { rss: field("VmRSS:")?, hwm: field("VmHWM:")? })
}

/// User + system CPU time of `pid` in seconds.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces, so split after its ')').
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the name and state.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ: 100 on every Linux architecture we run on (what sysconf(_SC_CLK_TCK) reports).
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tingot\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t5\n";
        assert_eq!(parse_status(status), Some(Memory { rss: 100 * 1024 * 1024, hwm: 200 * 1024 * 1024 }));
        let stat = "1234 (ingot serve) S 1 1234 1234 0 -1 4194560 2000 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(3.0));
        assert_eq!(parse_stat("garbage"), None);
    }
}
