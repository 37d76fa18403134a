//! The deterministic corpus: a tree shaped like `/etc` + `/usr/share`, and the
//! deterministic mutations that turn one generation of it into the next.
//!
//! Same arguments and same input give a byte-identical tree (contents, modes,
//! symlink targets and mtimes), independent of the machine and of library
//! versions: all randomness comes from [`crate::prng::Rng`].

use crate::Result;
use crate::prng::Rng;
use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// mtime of every generated entry: 2024-01-01T00:00:00Z.
pub const EPOCH: i64 = 1_704_067_200;

/// mtime of entries written by mutation round `round` (one day apart per round,
/// so that no stat cache can mistake a mutated file for the old one).
pub fn mutation_epoch(round: u32) -> i64 {
    EPOCH + 86_400 * i64::from(round.max(1))
}

const NAMES: &[&str] = &[
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
const KEYS: &[&str] = &[
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
const VALUES: &[&str] = &[
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

fn is_binary_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| BIN_EXT.contains(&ext))
}

/// Lines that files are assembled from, so that zstd sees realistic redundancy.
fn line_pool(rng: &mut Rng, n: usize) -> Vec<String> {
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
fn text_content(rng: &mut Rng, pool: &[String], size: usize, tag: &str) -> Vec<u8> {
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
fn binary_content(rng: &mut Rng, pool: &[String], size: usize) -> Vec<u8> {
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
enum Kind {
    Text,
    Binary,
}

/// ~95% text 100 B..8 KiB (median ~1 KiB), ~4% text 8..64 KiB, ~1% binary 64 KiB..4 MiB.
fn draw_size(rng: &mut Rng) -> (Kind, usize) {
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

fn file_name(rng: &mut Rng, kind: Kind, used: &mut HashSet<String>) -> String {
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

fn mode_for(rng: &mut Rng, name: &str) -> u32 {
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

/// Set the mtime (and atime) of `path` without following a symlink.
pub fn set_mtime(path: &Path, secs: i64) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: `c` is a valid NUL-terminated path and `times` points to two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(format!(
            "utimensat {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )
        .into());
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32, mtime: i64) -> Result<()> {
    fs::write(path, data).map_err(|e| format!("write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    set_mtime(path, mtime)
}

/// `target` relative to directory `from` (both relative to the same root).
fn relative_path(from_dir: &str, target: &str) -> String {
    let a: Vec<&str> = from_dir.split('/').filter(|s| !s.is_empty()).collect();
    let b: Vec<&str> = target.split('/').filter(|s| !s.is_empty()).collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = vec![".."; a.len() - common];
    parts.extend_from_slice(&b[common..]);
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CorpusStats {
    pub files: usize,
    pub symlinks: usize,
    pub dirs: usize,
    pub bytes: u64,
    pub duplicates: usize,
}

/// Generate a corpus of `nfiles` regular files into `out` (which must be absent or empty).
pub fn generate(nfiles: usize, seed: u64, out: &Path) -> Result<CorpusStats> {
    if out.exists() && fs::read_dir(out)?.next().is_some() {
        return Err(format!("refusing to generate into non-empty {}", out.display()).into());
    }
    fs::create_dir_all(out)?;
    let mut rng = Rng::derive(seed, 1);
    let pool = line_pool(&mut Rng::derive(seed, 2), 8000);

    // Directories: about 20 files each, depth <= 6, bushier near the top.
    let ndirs = (nfiles / 20).max(2);
    let mut dirs: Vec<(String, u32)> = vec![("etc".into(), 1), ("usr/share".into(), 2)];
    let mut used: Vec<HashSet<String>> = vec![HashSet::new(), HashSet::new()];
    while dirs.len() < ndirs {
        let idx = (dirs.len() as f64 * rng.f64().powi(2)) as usize;
        let (parent, depth) = dirs[idx].clone();
        if depth >= 6 {
            continue;
        }
        let suffix = *rng.pick(&[".d", "", "", "-conf"]);
        let mut name = format!("{}{suffix}", rng.pick(NAMES));
        if used[idx].contains(&name) {
            name.push_str(&rng.range(0, 999).to_string());
            if used[idx].contains(&name) {
                continue;
            }
        }
        used[idx].insert(name.clone());
        dirs.push((format!("{parent}/{name}"), depth + 1));
        used.push(HashSet::new());
    }
    for (d, _) in &dirs {
        fs::create_dir_all(out.join(d))?;
    }

    let mut stats = CorpusStats {
        dirs: dirs.len() + 1, // + "usr"
        ..Default::default()
    };
    let mut written: Vec<String> = Vec::with_capacity(nfiles);
    for _ in 0..nfiles {
        let di = rng.below(dirs.len());
        let (data, name) = if !written.is_empty() && rng.chance(0.05) {
            let src = &written[rng.below(written.len())];
            let kind = if is_binary_name(src) {
                Kind::Binary
            } else {
                Kind::Text
            };
            let name = file_name(&mut rng, kind, &mut used[di]);
            stats.duplicates += 1;
            (fs::read(out.join(src))?, name)
        } else {
            let (kind, size) = draw_size(&mut rng);
            let name = file_name(&mut rng, kind, &mut used[di]);
            let tag = format!("{}/{name}", dirs[di].0);
            let data = match kind {
                Kind::Text => text_content(&mut rng, &pool, size, &tag),
                Kind::Binary => binary_content(&mut rng, &pool, size),
            };
            (data, name)
        };
        let rel = format!("{}/{name}", dirs[di].0);
        let mode = mode_for(&mut rng, &name);
        write_file(&out.join(&rel), &data, mode, EPOCH)?;
        stats.bytes += data.len() as u64;
        written.push(rel);
    }
    stats.files = written.len();

    // Relative symlinks, to files (70%) and directories.
    let nlinks = (nfiles / 500).max(1);
    for _ in 0..nlinks {
        let di = rng.below(dirs.len());
        let target = if rng.chance(0.7) {
            written[rng.below(written.len())].clone()
        } else {
            dirs[rng.below(dirs.len())].0.clone()
        };
        let name = format!("{}.link", file_name(&mut rng, Kind::Text, &mut used[di]));
        let rel = format!("{}/{name}", dirs[di].0);
        let p = out.join(&rel);
        std::os::unix::fs::symlink(relative_path(&dirs[di].0, &target), &p)?;
        set_mtime(&p, EPOCH)?;
    }
    stats.symlinks = nlinks;

    let mut by_depth: Vec<&(String, u32)> = dirs.iter().collect();
    by_depth.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (d, _) in by_depth {
        set_mtime(&out.join(d), EPOCH)?;
    }
    set_mtime(&out.join("usr"), EPOCH)?;
    Ok(stats)
}

/// Relative paths under `root`, sorted by bytes: (regular files, symlinks, directories).
pub fn list_tree(root: &Path) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    let (mut files, mut links, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let abs = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        for entry in fs::read_dir(&abs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry.file_type()?;
            if ft.is_dir() {
                dirs.push(child.clone());
                stack.push(child);
            } else if ft.is_symlink() {
                links.push(child);
            } else if ft.is_file() {
                files.push(child);
            }
        }
    }
    files.sort();
    links.sort();
    dirs.sort();
    Ok((files, links, dirs))
}

/// How many files a mutation modifies, adds and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MutationSpec {
    pub modify: usize,
    pub add: usize,
    pub delete: usize,
}

impl MutationSpec {
    /// Modify `per_mille`‰ of `nfiles`, add and delete half as many each (at least one each).
    pub fn per_mille(nfiles: usize, per_mille: usize) -> Self {
        let modify = (nfiles * per_mille / 1000).max(1);
        let half = (nfiles * per_mille / 2000).max(1);
        MutationSpec {
            modify,
            add: half,
            delete: half,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MutationStats {
    pub modified: usize,
    pub added: usize,
    pub deleted: usize,
    pub files_after: usize,
}

fn normalize(rel: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

/// Mutate the tree at `root` in place, deterministically for (tree, spec, seed, round):
/// modify `spec.modify` files, delete `spec.delete` (never a symlink's target), add `spec.add`.
pub fn mutate(root: &Path, spec: MutationSpec, seed: u64, round: u32) -> Result<MutationStats> {
    let (files, links, dirs) = list_tree(root)?;
    let mut rng = Rng::derive(seed, 1000 + u64::from(round));
    let pool = line_pool(&mut Rng::derive(seed, 3), 2000);
    let mtime = mutation_epoch(round);
    let mut protected = HashSet::new();
    for l in &links {
        let target = fs::read_link(root.join(l))?;
        let parent = Path::new(l).parent().unwrap_or(Path::new(""));
        protected.insert(normalize(&parent.join(target).to_string_lossy()));
    }
    if spec.modify + spec.delete * 2 > files.len() {
        return Err(format!("tree too small ({} files) for {spec:?}", files.len()).into());
    }
    // Partial Fisher–Yates: a random order of the files, of which we use a prefix.
    let mut order: Vec<usize> = (0..files.len()).collect();
    for i in 0..order.len().min(spec.modify + spec.delete * 4 + 16) {
        let j = i + rng.below(order.len() - i);
        order.swap(i, j);
    }
    let mut stats = MutationStats::default();
    let mut touched_dirs = BTreeSet::new();
    for &i in &order[..spec.modify] {
        let rel = &files[i];
        let p = root.join(rel);
        let meta = fs::symlink_metadata(&p)?;
        let mut data = Vec::new();
        fs::File::open(&p)?.read_to_end(&mut data)?;
        if is_binary_name(rel) && data.len() > 8192 {
            let off = rng.below(data.len() - 4096);
            rng.fill(&mut data[off..off + 4096]);
        } else {
            let text = String::from_utf8_lossy(&data).into_owned();
            let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
            for _ in 0..rng.range(1, 3) {
                let i = rng.below(lines.len());
                lines[i] = format!(
                    "{} = {}  # changed r{round}",
                    rng.pick(KEYS),
                    rng.next_u32() >> 2
                );
            }
            if rng.chance(0.5) {
                lines.push(format!("{}={}", rng.pick(KEYS), rng.pick(VALUES)));
            }
            data = lines.join("\n").into_bytes();
        }
        write_file(&p, &data, meta.mode() & 0o7777, mtime)?;
        stats.modified += 1;
    }
    for &i in &order[spec.modify..] {
        if stats.deleted == spec.delete {
            break;
        }
        let rel = &files[i];
        if protected.contains(rel) {
            continue;
        }
        fs::remove_file(root.join(rel))?;
        if let Some((d, _)) = rel.rsplit_once('/') {
            touched_dirs.insert(d.to_string());
        }
        stats.deleted += 1;
    }
    if dirs.is_empty() {
        return Err("tree has no directories to add files to".into());
    }
    for _ in 0..spec.add {
        let d = &dirs[rng.below(dirs.len())];
        let mut used: HashSet<String> = fs::read_dir(root.join(d))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        let (kind, size) = draw_size(&mut rng);
        let name = file_name(&mut rng, kind, &mut used);
        let rel = format!("{d}/{name}");
        let data = match kind {
            Kind::Text => text_content(&mut rng, &pool, size, &rel),
            Kind::Binary => binary_content(&mut rng, &pool, size),
        };
        let mode = mode_for(&mut rng, &name);
        write_file(&root.join(&rel), &data, mode, mtime)?;
        touched_dirs.insert(d.clone());
        stats.added += 1;
    }
    for d in &touched_dirs {
        set_mtime(&root.join(d), mtime)?;
    }
    stats.files_after = files.len() + stats.added - stats.deleted;
    Ok(stats)
}

/// A digest of a whole tree: paths, types, modes, mtimes, contents and link targets.
pub fn tree_digest(root: &Path) -> Result<String> {
    let (files, links, dirs) = list_tree(root)?;
    let mut h = blake3::Hasher::new();
    let add_meta = |h: &mut blake3::Hasher, tag: &str, rel: &str| -> Result<PathBuf> {
        let p = root.join(rel);
        let m = fs::symlink_metadata(&p)?;
        h.update(format!("{tag}\0{rel}\0{:o}\0{}\0", m.mode() & 0o7777, m.mtime()).as_bytes());
        Ok(p)
    };
    for d in &dirs {
        add_meta(&mut h, "d", d)?;
    }
    for f in &files {
        let p = add_meta(&mut h, "f", f)?;
        h.update(blake3::hash(&fs::read(p)?).as_bytes());
    }
    for l in &links {
        let p = add_meta(&mut h, "l", l)?;
        h.update(fs::read_link(p)?.as_os_str().as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn corpus_is_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = generate(200, 1, a.path()).unwrap();
        let sb = generate(200, 1, b.path()).unwrap();
        assert_eq!(sa.files, 200);
        assert_eq!(sa.bytes, sb.bytes);
        assert_eq!(
            tree_digest(a.path()).unwrap(),
            tree_digest(b.path()).unwrap()
        );
        let c = tempfile::tempdir().unwrap();
        generate(200, 2, c.path()).unwrap();
        assert_ne!(
            tree_digest(a.path()).unwrap(),
            tree_digest(c.path()).unwrap()
        );
        let (files, links, _) = list_tree(a.path()).unwrap();
        assert_eq!(files.len(), 200);
        assert_eq!(links.len(), 1);
    }

    #[test]
    fn shape_is_plausible() {
        let d = tempfile::tempdir().unwrap();
        let s = generate(2000, 3, d.path()).unwrap();
        assert_eq!(s.files, 2000);
        assert_eq!(s.symlinks, 4);
        assert!(s.duplicates > 50 && s.duplicates < 160, "{s:?}");
        let (files, _, dirs) = list_tree(d.path()).unwrap();
        let mut sizes: Vec<u64> = files
            .iter()
            .map(|f| fs::metadata(d.path().join(f)).unwrap().len())
            .collect();
        sizes.sort();
        let median = sizes[sizes.len() / 2];
        assert!((700..1500).contains(&median), "median {median}");
        assert!(dirs.iter().all(|d| d.split('/').count() <= 6));
    }

    fn contents(root: &Path) -> HashMap<String, Vec<u8>> {
        let (files, _, _) = list_tree(root).unwrap();
        files
            .into_iter()
            .map(|f| {
                let data = fs::read(root.join(&f)).unwrap();
                (f, data)
            })
            .collect()
    }

    #[test]
    fn mutation_counts_are_right() {
        let d = tempfile::tempdir().unwrap();
        generate(2000, 1, d.path()).unwrap();
        let before = contents(d.path());
        let spec = MutationSpec::per_mille(2000, 10);
        assert_eq!(
            spec,
            MutationSpec {
                modify: 20,
                add: 10,
                delete: 10
            }
        );
        let st = mutate(d.path(), spec, 1, 1).unwrap();
        assert_eq!((st.modified, st.added, st.deleted), (20, 10, 10));
        assert_eq!(st.files_after, 2000);
        let after = contents(d.path());
        let removed = before.keys().filter(|k| !after.contains_key(*k)).count();
        let added = after.keys().filter(|k| !before.contains_key(*k)).count();
        let changed = before
            .iter()
            .filter(|(k, v)| after.get(*k).is_some_and(|w| w != *v))
            .count();
        assert_eq!((changed, added, removed), (20, 10, 10));
        // Symlinks still resolve.
        let (_, links, _) = list_tree(d.path()).unwrap();
        for l in links {
            assert!(fs::metadata(d.path().join(l)).is_ok());
        }
    }

    #[test]
    fn mutation_is_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for t in [a.path(), b.path()] {
            generate(300, 5, t).unwrap();
            mutate(t, MutationSpec::per_mille(300, 10), 5, 1).unwrap();
            mutate(t, MutationSpec::per_mille(300, 1), 5, 2).unwrap();
        }
        assert_eq!(
            tree_digest(a.path()).unwrap(),
            tree_digest(b.path()).unwrap()
        );
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative_path("etc/a", "etc/b/c"), "../b/c");
        assert_eq!(relative_path("etc", "etc/x"), "x");
        assert_eq!(relative_path("usr/share/x", "etc"), "../../../etc");
        assert_eq!(normalize("etc/a/../b/c"), "etc/b/c");
    }
}
