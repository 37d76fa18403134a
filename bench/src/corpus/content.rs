//! What the corpus is made of: names, config-like text and binary-ish
//! content, file sizes and modes, all drawn from [`Rng`].

use crate::prng::Rng;
use std::collections::HashSet;

pub(super) const NAMES: &[&str] = &[
    "acpi",
    "adduser",
    "alternatives",
    "apache2",
    "apt",
    "auth",
    "avahi",
    "bash",
    "bind",
    "boot",
    "ca",
    "certs",
    "chrony",
    "cloud",
    "console",
    "cron",
    "crypttab",
    "cups",
    "dbus",
    "debconf",
    "default",
    "depmod",
    "dhcp",
    "dictionaries",
    "dnsmasq",
    "doc",
    "dpkg",
    "emacs",
    "exim4",
    "firewalld",
    "fonts",
    "fstab",
    "fwupd",
    "gdb",
    "glib",
    "gnupg",
    "groff",
    "grub",
    "gss",
    "gtk",
    "hdparm",
    "host",
    "icons",
    "ifupdown",
    "info",
    "init",
    "initramfs",
    "iproute2",
    "iptables",
    "issue",
    "java",
    "kbd",
    "kernel",
    "keyrings",
    "ldap",
    "libaudit",
    "locale",
    "logcheck",
    "logrotate",
    "lsb",
    "lvm",
    "magic",
    "man",
    "mdadm",
    "mime",
    "modprobe",
    "modules",
    "mysql",
    "nanorc",
    "netplan",
    "network",
    "networkd",
    "nginx",
    "nsswitch",
    "ntp",
    "opt",
    "pam",
    "perl",
    "php",
    "pki",
    "plymouth",
    "polkit",
    "postfix",
    "ppp",
    "profile",
    "protocols",
    "python3",
    "redis",
    "resolv",
    "rsyslog",
    "samba",
    "security",
    "selinux",
    "sensors",
    "services",
    "sgml",
    "shells",
    "skel",
    "smartd",
    "snmp",
    "ssh",
    "ssl",
    "sudo",
    "sysctl",
    "systemd",
    "terminfo",
    "timezone",
    "tmpfiles",
    "tzdata",
    "ucf",
    "udev",
    "ufw",
    "unattended",
    "vim",
    "wireguard",
    "wpa",
    "x11",
    "xdg",
    "xml",
    "zoneinfo",
    "zsh",
];
const TEXT_EXT: &[&str] = &[
    "conf", "cfg", "ini", "json", "xml", "yaml", "txt", "list", "rules", "service", "sh", "py",
    "pem", "desktop", "", "", "d", "local", "policy", "socket", "timer", "md", "html",
];
const BIN_EXT: &[&str] = &[
    "so", "bin", "db", "gz", "ttf", "mo", "png", "cache", "img", "pak", "dat", "woff2",
];
pub(super) const KEYS: &[&str] = &[
    "Enabled",
    "Path",
    "User",
    "Group",
    "Timeout",
    "Interval",
    "MaxConnections",
    "Port",
    "Listen",
    "BindAddress",
    "LogLevel",
    "Retries",
    "CacheSize",
    "BufferSize",
    "Compression",
    "Ciphers",
    "AllowUsers",
    "DenyUsers",
    "Include",
    "Options",
    "Mode",
    "UMask",
    "Nice",
    "LimitNOFILE",
    "ExecStart",
    "ExecReload",
    "Restart",
    "WantedBy",
    "After",
    "Requires",
    "Description",
    "Environment",
    "LANG",
    "TZ",
    "HOME",
    "SHELL",
    "PATH",
    "server",
    "pool",
    "driftfile",
    "keepalive",
    "worker_processes",
    "include_dir",
    "search",
    "nameserver",
];
pub(super) const VALUES: &[&str] = &[
    "yes",
    "no",
    "true",
    "false",
    "on",
    "off",
    "auto",
    "none",
    "default",
    "strict",
    "info",
    "warning",
    "multi-user.target",
    "network-online.target",
    "root",
    "nobody",
    "www-data",
];

pub(super) fn is_binary_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| BIN_EXT.contains(&ext))
}

/// Lines that files are assembled from, so that zstd sees realistic redundancy.
pub(super) fn line_pool(rng: &mut Rng, n: usize) -> Vec<String> {
    let mut pool = Vec::with_capacity(n);
    for _ in 0..n {
        let r = rng.f64();
        let line = if r < 0.12 {
            let k = rng.range(3, 9);
            let words: Vec<&str> = (0..k).map(|_| *rng.pick(NAMES)).collect();
            format!("# {}", words.join(" "))
        } else if r < 0.20 {
            format!("[{}:{}]", rng.pick(NAMES), rng.pick(NAMES))
        } else if r < 0.29 {
            String::new()
        } else if r < 0.75 {
            let v = rng.f64();
            let value = if v < 0.3 {
                rng.range(0, 65_535).to_string()
            } else if v < 0.6 {
                let k = rng.range(1, 4);
                let parts: Vec<&str> = (0..k).map(|_| *rng.pick(NAMES)).collect();
                format!("/{}", parts.join("/"))
            } else if v < 0.8 {
                (*rng.pick(VALUES)).to_string()
            } else {
                let k = rng.range(1, 5);
                let parts: Vec<&str> = (0..k).map(|_| *rng.pick(NAMES)).collect();
                format!("\"{}\"", parts.join(" "))
            };
            let sep = *rng.pick(&[" = ", "=", " ", ": ", "\t"]);
            let indent = if rng.chance(0.3) { "    " } else { "" };
            format!("{indent}{}{sep}{value}", rng.pick(KEYS))
        } else {
            format!(
                "{} {} 10.{}.{}.{} {} {}",
                rng.pick(NAMES),
                rng.pick(KEYS),
                rng.range(0, 255),
                rng.range(0, 255),
                rng.range(1, 254),
                rng.pick(VALUES),
                rng.range(0, 9)
            )
        };
        pool.push(line);
    }
    pool
}

/// Config-like text of `size` bytes; its first line makes it unique.
pub(super) fn text_content(rng: &mut Rng, pool: &[String], size: usize, tag: &str) -> Vec<u8> {
    let mut out = format!("# {tag} id {:08x}\n", rng.next_u32()).into_bytes();
    while out.len() < size {
        let start = rng.below(pool.len());
        let run = rng.range(1, 12) as usize;
        for j in 0..run {
            if rng.chance(0.08) {
                let line = format!(
                    "{}_{}={}\n",
                    rng.pick(KEYS),
                    rng.range(0, 99),
                    rng.next_u32() >> 8
                );
                out.extend_from_slice(line.as_bytes());
            } else {
                out.extend_from_slice(pool[(start + j) % pool.len()].as_bytes());
                out.push(b'\n');
            }
            if out.len() >= size {
                break;
            }
        }
    }
    out.truncate(size);
    out
}

/// Binary-ish content in 4 KiB blocks: random, structured tables, text, zeros.
pub(super) fn binary_content(rng: &mut Rng, pool: &[String], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let n = (size - out.len()).min(4096);
        let r = rng.f64();
        let start = out.len();
        if r < 0.45 {
            out.resize(start + n, 0);
            rng.fill(&mut out[start..]);
        } else if r < 0.75 {
            let base = rng.next_u32();
            let step = rng.range(1, 64) as u32;
            let mut k = 0u32;
            while out.len() < start + n {
                out.extend_from_slice(&base.wrapping_add(k.wrapping_mul(step)).to_le_bytes());
                out.extend_from_slice(&[rng.next_u32() as u8, 0, 0, 1]);
                k += 1;
            }
            out.truncate(start + n);
        } else if r < 0.90 {
            let t = text_content(rng, pool, n, "blk");
            out.extend_from_slice(&t);
            out.resize(start + n, 0);
        } else {
            out.resize(start + n, 0);
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Binary,
}

/// ~95% text 100 B..8 KiB (median ~1 KiB), ~4% text 8..64 KiB, ~1% binary 64 KiB..4 MiB.
pub(super) fn draw_size(rng: &mut Rng) -> (Kind, usize) {
    let r = rng.f64();
    if r < 0.95 {
        let s = (1024f64.ln() + 0.9 * rng.gauss()).exp() as usize;
        (Kind::Text, s.clamp(100, 8192))
    } else if r < 0.99 {
        (
            Kind::Text,
            (8192.0 * (rng.f64() * 8f64.ln()).exp()) as usize,
        )
    } else {
        let s = 65_536.0 * (rng.f64().powf(1.4) * 64f64.ln()).exp();
        (Kind::Binary, (s as usize).min(4 << 20))
    }
}

pub(super) fn file_name(rng: &mut Rng, kind: Kind, used: &mut HashSet<String>) -> String {
    loop {
        let mut w = (*rng.pick(NAMES)).to_string();
        if rng.chance(0.5) {
            w.push(*rng.pick(&['-', '_', '.']));
            let second = *rng.pick(NAMES);
            w.push_str(second);
        }
        if rng.chance(0.3) {
            w.push_str(&rng.range(0, 99).to_string());
        }
        let ext = *rng.pick(if kind == Kind::Binary {
            BIN_EXT
        } else {
            TEXT_EXT
        });
        let name = if ext.is_empty() {
            w
        } else {
            format!("{w}.{ext}")
        };
        if used.insert(name.clone()) {
            return name;
        }
    }
}

pub(super) fn mode_for(rng: &mut Rng, name: &str) -> u32 {
    let exec = rng.chance(0.03);
    let secret = rng.chance(0.02);
    if name.ends_with(".sh") || name.ends_with(".py") || exec {
        0o755
    } else if name.ends_with(".pem") || secret {
        0o600
    } else {
        0o644
    }
}
