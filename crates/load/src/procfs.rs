//! Memory and CPU time of a process, from Linux's /proc (the benchmark's machine).

/// VmRSS and VmHWM (peak RSS) in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

/// Memory of `pids` ("self" for this process, or pids separated by commas: the sum of
/// the processes, e.g. the nodes of a cluster); None if one cannot be read (no such
/// process, not Linux).
pub fn memory(pids: &str) -> Option<Memory> {
    pids.split(',').try_fold(Memory::default(), |sum, pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let m = parse_status(&status)?;
        Some(Memory { rss: sum.rss + m.rss, hwm: sum.hwm + m.hwm })
    })
}

fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some(Memory { rss: field("VmRSS:")?, hwm: field("VmHWM:")? })
}

/// User + system CPU time of `pids` (as in [`memory`]) in seconds.
pub fn cpu_seconds(pids: &str) -> Option<f64> {
    pids.split(',').try_fold(0.0, |sum, pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(sum + parse_stat(&stat)?)
    })
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

    #[test]
    fn several_processes_add_up() {
        let me = memory("self").unwrap();
        let twice = memory("self,self").unwrap();
        assert!(twice.hwm == 2 * me.hwm || twice.hwm > me.hwm, "{me:?} {twice:?}");
        assert!(cpu_seconds("self,self").unwrap() >= cpu_seconds("self").unwrap());
        assert_eq!(memory("self,0"), None, "one unreadable process: no sum");
    }
}
