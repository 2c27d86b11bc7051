//! The process-wide settings the unit also makes (`UMask=0077`, `LimitNOFILE=`),
//! applied by the daemon itself at start so that it is as safe when started by
//! hand, by another supervisor or from a shell with umask 022.
//!
//! Owns the two system calls and nothing else; `main` calls [`apply`] before any
//! file or socket is opened.

// `rlim_t` is `u64` on 64-bit Linux and narrower elsewhere: the casts are kept.
#![allow(clippy::unnecessary_cast)]

/// What [`apply`] did, for one log line once logging is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The file-descriptor soft limit now in force.
    pub nofile_soft: u64,
    /// The hard limit it was raised towards.
    pub nofile_hard: u64,
    /// `false` when raising was refused (a seccomp filter without `@resources`:
    /// then `LimitNOFILE=` in the unit has set the limit already).
    pub raised: bool,
}

/// Sets the umask to 0077 (journal, media files, file sink output: customer data,
/// never readable by others) and raises the soft `RLIMIT_NOFILE` to the hard
/// limit, as most daemons do: the default soft limit (1,024) is low enough for a
/// flood of inbound connections to starve the daemon's own outbound ones.
pub fn apply() -> Applied {
    // SAFETY: umask only replaces the process's file-mode creation mask; it
    // cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
    raise_nofile()
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (best effort).
pub fn raise_nofile() -> Applied {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Applied {
            nofile_soft: 0,
            nofile_hard: 0,
            raised: false,
        };
    }
    let hard = limit.rlim_max;
    if limit.rlim_cur >= hard {
        return Applied {
            nofile_soft: limit.rlim_cur as u64,
            nofile_hard: hard as u64,
            raised: true,
        };
    }
    let wanted = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one `rlimit` through a pointer to a live local.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0;
    Applied {
        nofile_soft: if raised { hard } else { limit.rlim_cur } as u64,
        nofile_hard: hard as u64,
        raised,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> (u64, u64) {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise_nofile`.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        (limit.rlim_cur as u64, limit.rlim_max as u64)
    }

    #[test]
    fn the_soft_file_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = current();
        if soft == hard {
            // Lower it a little first (never below what the tests use).
            let lowered = libc::rlimit {
                rlim_cur: (hard - 1) as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: as in `raise_nofile`.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        }
        assert!(current().0 < hard);
        let applied = raise_nofile();
        assert!(applied.raised);
        assert_eq!(current(), (hard, hard));
        assert_eq!(applied.nofile_soft, hard);
    }
}
