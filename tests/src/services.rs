//! Test support for services: a real systemd, booted as PID 1 of its own
//! PID and mount namespace on a scratch root ([`Booted`]), and the unit
//! files the tests use.
//!
//! The scratch root gets the host's `/usr` read-only (so systemd, its
//! tools and /bin/sh are there), its own `/etc`, `/var` and tmpfs `/run`,
//! `/tmp`; `/proc`, `/sys` and `/dev` are the kernel's. systemd boots
//! `basic.target` there (the default target would wait for the host's
//! serial console); the binary under test is copied in and run with
//! `nsenter` inside the namespaces, with `--root /`, so it sees a running
//! systemd exactly as on a real host. Killing the namespace's PID 1 ends
//! everything in it, and its mounts with it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Run, TestEnv, dump_tree};

/// A unit whose every start, stop and reload is appended to
/// `/var/log/<name>.events` (read through [`Booted::events`]).
pub fn logging_unit(name: &str) -> String {
    format!(
        "[Unit]\nDescription=sysgen test unit {name}\n\n[Service]\n\
         ExecStart=/bin/sh -c 'echo start >> /var/log/{name}.events; exec sleep infinity'\n\
         ExecReload=/bin/sh -c 'echo reload >> /var/log/{name}.events'\n\
         ExecStopPost=/bin/sh -c 'echo stop >> /var/log/{name}.events'\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// A unit that cannot start (`Type=oneshot`, `ExecStart=/bin/false`).
pub fn failing_unit(name: &str) -> String {
    format!(
        "[Unit]\nDescription=sysgen test unit {name} that fails\n\n[Service]\nType=oneshot\n\
         ExecStart=/bin/sh -c 'echo {name} cannot start: no configuration >&2; exit 3'\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// A real systemd running as PID 1 on a scratch root.
pub struct Booted {
    dir: tempfile::TempDir,
    unshare: Child,
    /// systemd's pid, as the host sees it.
    pid: u32,
}

const SETUP: &str = r#"
set -e
R="$1"
mount --bind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
exec chroot "$R" /lib/systemd/systemd --system --unit=basic.target --log-target=kmsg --log-level=warning
"#;

impl Booted {
    /// Boots systemd on a fresh scratch root and waits until it is up.
    /// Panics (failing the test) with what went wrong if it cannot.
    pub fn boot() -> Booted {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        for d in [
            "usr",
            "etc",
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "var/lib",
            "var/log",
            "root",
            "cfg",
            "sysgen-test",
        ] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        for l in ["bin", "sbin", "lib", "lib64"] {
            symlink(format!("usr/{l}"), root.join(l)).expect("symlink");
        }
        for f in ["passwd", "group"] {
            fs::copy(Path::new("/etc").join(f), root.join("etc").join(f)).expect("copy etc");
        }
        fs::copy("/usr/lib/os-release", root.join("etc/os-release")).expect("os-release");
        fs::write(
            root.join("etc/machine-id"),
            "5ea5e5ea5e5ea5e5ea5e5ea5e5ea5e5e\n",
        )
        .expect("machine-id");
        fs::copy(TestEnv::sysgen_bin(), root.join("sysgen-test/sysgen")).expect("copy sysgen");

        let unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child=SIGKILL",
                "--mount",
                "--propagation",
                "private",
                "--uts",
                "sh",
                "-c",
                SETUP,
                "sh",
            ])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux)");
        let mut booted = Booted {
            dir,
            pid: 0,
            unshare,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = booted.unshare.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = booted.unshare.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("systemd could not be booted in a namespace ({status}): {err}");
            }
            let children =
                fs::read_to_string(format!("/proc/{0}/task/{0}/children", booted.unshare.id()))
                    .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                booted.pid = pid.parse().expect("a pid");
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    let state = booted.systemctl(&["is-system-running"]).stdout;
                    if ["running", "degraded"].contains(&state.trim()) {
                        return booted;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not finish booting in the namespace within 60s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The scratch root, as the host sees it.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A host path of an in-root path.
    pub fn at(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    /// Writes `/cfg/<name>` from a JSON value; returns its in-root path.
    pub fn config(&self, name: &str, v: serde_json::Value) -> String {
        fs::write(
            self.at(&format!("/cfg/{name}")),
            serde_json::to_string_pretty(&v).expect("json"),
        )
        .expect("write config");
        format!("/cfg/{name}")
    }

    /// Runs a program inside the namespaces, chrooted into the scratch root.
    pub fn inside(&self, program: &str, args: &[&str]) -> Run {
        self.inside_with_fault(None, program, args)
    }

    /// [`Booted::inside`], with `SYSGEN_FAULT_AFTER_STEPS=k` when `fault` is set.
    fn inside_with_fault(&self, fault: Option<u64>, program: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new("nsenter");
        cmd.env_remove("SYSGEN_FAULT_AFTER_STEPS");
        if let Some(k) = fault {
            cmd.env("SYSGEN_FAULT_AFTER_STEPS", k.to_string());
        }
        let out = cmd
            .args(["-t", &self.pid.to_string(), "-m", "-p", "-u", "-r", "-w"])
            .arg(program)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter (util-linux)");
        Run::from(out)
    }

    /// Runs the binary under test on the booted root (`--root /`).
    pub fn sysgen(&self, args: &[&str]) -> Run {
        let mut all = vec!["--root", "/"];
        all.extend(args);
        self.inside("/sysgen-test/sysgen", &all)
    }

    /// The binary under test, aborted after its k-th applied step.
    pub fn sysgen_with_fault(&self, k: u64, args: &[&str]) -> Run {
        let mut all = vec!["--root", "/"];
        all.extend(args);
        self.inside_with_fault(Some(k), "/sysgen-test/sysgen", &all)
    }

    pub fn systemctl(&self, args: &[&str]) -> Run {
        self.inside("/usr/bin/systemctl", args)
    }

    /// A unit property (`systemctl show -p NAME --value UNIT`).
    pub fn prop(&self, unit: &str, name: &str) -> String {
        self.systemctl(&["show", "-p", name, "--value", unit])
            .stdout
            .trim()
            .to_owned()
    }

    /// What the unit logged to `/var/log/<name>.events`, one word a line.
    pub fn events(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.at(&format!("/var/log/{name}.events")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The scratch root's `/etc` (with its enablement links), whole.
    pub fn etc_tree(&self) -> String {
        dump_tree(
            &self.root(),
            &[self.at("/sysgen-test"), self.at("/var"), self.at("/usr")],
        )
        .lines()
        .filter(|l| l.starts_with("/etc/") || l.starts_with("/srv"))
        .collect::<Vec<_>>()
        .join("\n")
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // SIGKILL to the namespace's PID 1 ends every process in it; the
        // namespace's mounts go with its last process.
        if let (true, Ok(pid)) = (self.pid != 0, i32::try_from(self.pid)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}
