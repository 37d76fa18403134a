//! Anchors: the same operations done by existing tools on the same corpus, in
//! the same run. A missing tool is skipped; a failing anchor is reported and
//! skipped, never fatal.

use crate::record::Recorder;
use crate::report::Sizes;
use crate::{Ctx, Result, measure, on_path, users_path};
use std::cell::RefCell;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn run_all(ctx: &Ctx, rec: &mut Recorder, sizes: &mut Sizes) {
    if skip_unless(
        ctx,
        rec,
        "b3sum",
        "b3sum",
        &[("b3sum", "hash all files, 2 processes")],
    ) {
        b3sum(ctx, rec);
    }
    // Measured with the first switch, interleaved with it, unless that was skipped.
    if rec.get("cp_a").is_none()
        && skip_unless(ctx, rec, "cp", "cp", &[("cp_a", "cp -a of the tree")])
    {
        copy_anchor(
            ctx,
            rec,
            ("cp_a", "cp -a of the tree", "cp"),
            users_path::cp_cmd,
        );
    }
    if rec.get("rsync_a").is_none()
        && skip_unless(
            ctx,
            rec,
            "rsync",
            "rsync",
            &[("rsync_a", "rsync -a of the tree")],
        )
    {
        copy_anchor(
            ctx,
            rec,
            ("rsync_a", "rsync -a of the tree", "rsync"),
            users_path::rsync_cmd,
        );
    }
    let git_ops = [
        ("git_commit", "git add -A && git commit (fresh repo)"),
        ("git_status", "git status, nothing changed"),
        ("git_diff", "git diff --raw, commits 1% apart"),
        ("git_checkout", "git checkout, full"),
        ("git_checkout_1pct", "git checkout, commits 1% apart"),
        ("git_prune", "git prune after dropping a commit"),
    ];
    if skip_unless(ctx, rec, "git", "git", &git_ops)
        && let Err(e) = git(ctx, rec, sizes)
    {
        eprintln!("[anchor] git: {e}");
        skip_missing(rec, &git_ops, "git", &format!("setup failed: {e}"));
    }
    let ostree_ops = [
        ("ostree_commit", "ostree commit (bare repo)"),
        ("ostree_commit_unchanged", "ostree commit, unchanged tree"),
        ("ostree_diff", "ostree diff, commits 1% apart"),
        ("ostree_checkout", "ostree checkout -U --force-copy"),
        ("ostree_prune", "ostree prune after dropping a commit"),
    ];
    if skip_unless(ctx, rec, "ostree", "ostree", &ostree_ops)
        && let Err(e) = ostree(ctx, rec, sizes)
    {
        eprintln!("[anchor] ostree: {e}");
        skip_missing(rec, &ostree_ops, "ostree", &format!("setup failed: {e}"));
    }
    if skip_unless(
        ctx,
        rec,
        "nix",
        "nix-store",
        &[("nix_add", "nix-store --add")],
    ) {
        nix(ctx, rec, sizes);
    }
}

/// True if the tool should run; otherwise records its operations as skipped.
fn skip_unless(ctx: &Ctx, rec: &mut Recorder, name: &str, exe: &str, ops: &[(&str, &str)]) -> bool {
    let why = if ctx.skipped(name) {
        "--skip".to_string()
    } else if !on_path(exe) {
        format!("{exe} is not installed")
    } else {
        return true;
    };
    for (k, l) in ops {
        rec.skip(k, l, name, &why);
    }
    false
}

/// Record as skipped the operations of `ops` that have no result yet.
fn skip_missing(rec: &mut Recorder, ops: &[(&str, &str)], tool: &str, why: &str) {
    for (k, l) in ops {
        if rec.get(k).is_none() {
            rec.skip(k, l, tool, why);
        }
    }
}

fn sh(script: &str, cwd: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).current_dir(cwd).env("LC_ALL", "C");
    c
}

fn b3sum(ctx: &Ctx, rec: &mut Recorder) {
    rec.measure(
        "[anchor]",
        "b3sum",
        "hash all files, 2 processes",
        "b3sum",
        ctx.runs,
        &mut |_| Ok(()),
        &mut |_| {
            Ok(sh(
                "find . -type f -print0 | xargs -0 -P2 -n 2000 b3sum > /dev/null",
                &ctx.a,
            ))
        },
    );
}

/// A copy of the tree to a fresh directory per run, `key` of `tool`.
fn copy_anchor(
    ctx: &Ctx,
    rec: &mut Recorder,
    (key, label, tool): (&str, &str, &str),
    command: fn(&Ctx, &Path, usize) -> Command,
) {
    let base = ctx.work.join("anchors").join(tool);
    rec.measure(
        "[anchor]",
        key,
        label,
        tool,
        ctx.runs,
        &mut |_| {
            std::fs::create_dir_all(&base)?;
            Ok(())
        },
        &mut |i| Ok(command(ctx, &base, i)),
    );
    if let Err(e) = ctx.release(&[&format!("anchors/{tool}")]) {
        eprintln!("[reclaim] {e}");
    }
}

fn git_env(c: &mut Command) {
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .env("LC_ALL", "C");
}

/// git's options: a separate git dir, no auto-gc, no reflogs.
fn git_opts(git_dir: &Path, work_tree: Option<&Path>) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "-c",
        "gc.auto=0",
        "-c",
        "core.logAllRefUpdates=false",
        "-c",
        "advice.detachedHead=false",
        "--git-dir",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    v.push(git_dir.into());
    if let Some(w) = work_tree {
        v.push("--work-tree".into());
        v.push(w.into());
    }
    v
}

/// `git` with a fixed identity and no user configuration.
fn git_cmd(git_dir: &Path, work_tree: Option<&Path>) -> Command {
    let mut c = Command::new("git");
    git_env(&mut c);
    c.args(git_opts(git_dir, work_tree));
    c
}

fn git_out(ctx: &Ctx, name: &str, mut c: Command, args: &[&str]) -> Result<String> {
    c.args(args);
    Ok(ctx.untimed(name, c)?.stdout_text().trim().to_string())
}

fn git(ctx: &Ctx, rec: &mut Recorder, sizes: &mut Sizes) -> Result<()> {
    let base = ctx.fresh_dir("anchors/git")?;
    let n = ctx.runs;
    let repo = |i: usize| base.join(format!("repo-{i}.git"));
    // add + commit into a fresh bare repository, per run.
    let ok = rec.measure(
        "[anchor]",
        "git_commit",
        "git add -A && git commit (fresh repo)",
        "git",
        n,
        &mut |i| {
            let mut c = git_cmd(&repo(i), None);
            c.args(["init", "-q", "--bare"]).arg(repo(i));
            ctx.untimed("git-init", c)?;
            Ok(())
        },
        &mut |i| {
            // Both steps in one timed child, as a user would type them.
            let mut c = sh(r#"git "$@" add -A && git "$@" commit -q -m A"#, &ctx.a);
            git_env(&mut c);
            c.arg("sh").args(git_opts(&repo(i), Some(&ctx.a)));
            Ok(c)
        },
    );
    if !ok {
        return Err("git commit failed".into());
    }
    let gd = repo(n);
    sizes.git_objects_after_commit = Some(measure::disk_usage(&gd.join("objects")));
    let wt_a = Some(ctx.a.as_path());
    git_out(ctx, "git-tag", git_cmd(&gd, None), &["tag", "genA"])?;

    rec.measure(
        "[anchor]",
        "git_status",
        "git status, nothing changed",
        "git",
        n,
        &mut |_| Ok(()),
        &mut |_| {
            let mut c = git_cmd(&gd, wt_a);
            c.args(["status", "--porcelain"]);
            Ok(c)
        },
    );

    let wt_b = Some(ctx.b.as_path());
    git_out(ctx, "git-add-b", git_cmd(&gd, wt_b), &["add", "-A"])?;
    git_out(
        ctx,
        "git-commit-b",
        git_cmd(&gd, wt_b),
        &["commit", "-q", "-m", "B"],
    )?;
    git_out(ctx, "git-tag", git_cmd(&gd, None), &["tag", "genB"])?;

    rec.measure(
        "[anchor]",
        "git_diff",
        "git diff --raw, commits 1% apart",
        "git",
        n,
        &mut |_| Ok(()),
        &mut |_| {
            let mut c = git_cmd(&gd, None);
            c.args(["diff", "--raw", "genA", "genB"]);
            Ok(c)
        },
    );

    let co = base.join("checkouts");
    std::fs::create_dir_all(&co)?;
    let wt = |i: usize| co.join(i.to_string());
    let ok = rec.measure(
        "[anchor]",
        "git_checkout",
        "git checkout, full",
        "git",
        n,
        &mut |_| Ok(()),
        &mut |i| {
            let mut c = git_cmd(&gd, None);
            c.args(["worktree", "add", "-q", "--detach"])
                .arg(wt(i))
                .arg("genA");
            Ok(c)
        },
    );
    if ok {
        let last = wt(n);
        let target = |i: usize| if i % 2 == 1 { "genB" } else { "genA" };
        rec.measure(
            "[anchor]",
            "git_checkout_1pct",
            "git checkout, commits 1% apart",
            "git",
            n,
            &mut |_| Ok(()),
            &mut |i| {
                // In the worktree itself, so that git uses the worktree's own index.
                let mut c = Command::new("git");
                git_env(&mut c);
                c.arg("-C").arg(&last).args([
                    "-c",
                    "advice.detachedHead=false",
                    "checkout",
                    "-q",
                    "--detach",
                    target(i),
                ]);
                Ok(c)
            },
        );
    } else {
        rec.skip(
            "git_checkout_1pct",
            "git checkout, commits 1% apart",
            "git",
            "no checkout",
        );
    }
    // Worktrees keep their commits reachable: move them aside first.
    ctx.trash(&co)?;
    git_out(
        ctx,
        "git-worktree-prune",
        git_cmd(&gd, None),
        &["worktree", "prune"],
    )?;

    // prune after dropping commit A: B re-rooted as a parentless commit, tags gone.
    // Each run works on a hard-linked copy of the repository (git writes refs by
    // rename, so the original stays intact).
    let pr = |i: usize| base.join(format!("prune-{i}.git"));
    rec.measure(
        "[anchor]",
        "git_prune",
        "git prune after dropping a commit",
        "git",
        n,
        &mut |i| {
            let st = Command::new("cp").arg("-al").arg(&gd).arg(pr(i)).status()?;
            if !st.success() {
                return Err("cp -al of the repository failed".into());
            }
            let g = pr(i);
            let c = git_out(
                ctx,
                "git-commit-tree",
                git_cmd(&g, None),
                &["commit-tree", "genB^{tree}", "-m", "B only"],
            )?;
            git_out(
                ctx,
                "git-update-ref",
                git_cmd(&g, None),
                &["update-ref", "HEAD", &c],
            )?;
            git_out(
                ctx,
                "git-tag-d",
                git_cmd(&g, None),
                &["tag", "-d", "genA", "genB"],
            )?;
            git_out(
                ctx,
                "git-reflog",
                git_cmd(&g, None),
                &["reflog", "expire", "--expire=now", "--all"],
            )?;
            Ok(())
        },
        &mut |i| {
            let mut c = git_cmd(&pr(i), None);
            c.args(["prune", "--expire=now"]);
            Ok(c)
        },
    );
    ctx.release(&["anchors/git"])
}

fn ostree_cmd(repo: &Path) -> Command {
    let mut c = Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()))
        .env("LC_ALL", "C");
    c
}

fn ostree(ctx: &Ctx, rec: &mut Recorder, sizes: &mut Sizes) -> Result<()> {
    let base = ctx.fresh_dir("anchors/ostree")?;
    let n = ctx.runs;
    let repo = |i: usize| base.join(format!("repo-{i}"));
    let tree_a = format!("--tree=dir={}", ctx.a.display());
    let ok = rec.measure(
        "[anchor]",
        "ostree_commit",
        "ostree commit (bare repo)",
        "ostree",
        n,
        &mut |i| {
            let mut c = ostree_cmd(&repo(i));
            c.args(["init", "--mode=bare"]);
            ctx.untimed("ostree-init", c)?;
            Ok(())
        },
        &mut |i| {
            let mut c = ostree_cmd(&repo(i));
            c.args(["commit", "-b", "main", "-s", "A", &tree_a]);
            Ok(c)
        },
    );
    if !ok {
        return Err("ostree commit failed".into());
    }
    let r = repo(n);
    let rev_a = rec
        .get("ostree_commit")
        .and_then(|o| o.runs.last())
        .map(|r| r.stdout_text().trim().to_string())
        .unwrap_or_default();
    sizes.ostree_repo_after_commit = Some(measure::disk_usage(&r));
    rec.measure(
        "[anchor]",
        "ostree_commit_unchanged",
        "ostree commit, unchanged tree",
        "ostree",
        n,
        &mut |_| Ok(()),
        &mut |_| {
            let mut c = ostree_cmd(&r);
            c.args(["commit", "-b", "main", "-s", "A again", &tree_a]);
            Ok(c)
        },
    );
    let mut c = ostree_cmd(&r);
    c.args(["commit", "-b", "main", "-s", "B"])
        .arg(format!("--tree=dir={}", ctx.b.display()));
    let rev_b = ctx
        .untimed("ostree-commit-b", c)?
        .stdout_text()
        .trim()
        .to_string();
    rec.measure(
        "[anchor]",
        "ostree_diff",
        "ostree diff, commits 1% apart",
        "ostree",
        n,
        &mut |_| Ok(()),
        &mut |_| {
            let mut c = ostree_cmd(&r);
            c.args(["diff", &rev_a, &rev_b]);
            Ok(c)
        },
    );
    let co: PathBuf = base.join("checkouts");
    std::fs::create_dir_all(&co)?;
    rec.measure(
        "[anchor]",
        "ostree_checkout",
        "ostree checkout -U --force-copy",
        "ostree",
        n,
        &mut |_| Ok(()),
        &mut |i| {
            let mut c = ostree_cmd(&r);
            c.args(["checkout", "-U", "--force-copy", &rev_a])
                .arg(co.join(i.to_string()));
            Ok(c)
        },
    );
    // prune: keep only the tip (B); per run on a hard-linked copy of the repository.
    let pr = |i: usize| base.join(format!("prune-{i}"));
    rec.measure(
        "[anchor]",
        "ostree_prune",
        "ostree prune after dropping a commit",
        "ostree",
        n,
        &mut |i| {
            let st = Command::new("cp").arg("-al").arg(&r).arg(pr(i)).status()?;
            if !st.success() {
                return Err("cp -al of the repository failed".into());
            }
            Ok(())
        },
        &mut |i| {
            let mut c = ostree_cmd(&pr(i));
            c.args(["prune", "--refs-only", "--depth=0"]);
            Ok(c)
        },
    );
    ctx.release(&["anchors/ostree"])
}

fn nix(ctx: &Ctx, rec: &mut Recorder, sizes: &mut Sizes) {
    let stores = RefCell::new(Vec::new());
    let ok = rec.measure(
        "[anchor]",
        "nix_add",
        "nix-store --add",
        "nix",
        ctx.runs,
        &mut |i| {
            stores
                .borrow_mut()
                .push(ctx.fresh_dir(&format!("anchors/nix/{i}"))?);
            Ok(())
        },
        &mut |i| {
            let mut c = Command::new("nix-store");
            c.arg("--store")
                .arg(&stores.borrow()[i - 1])
                .arg("--add")
                .arg(&ctx.a)
                .env("LC_ALL", "C");
            Ok(c)
        },
    );
    if ok && let Some(s) = stores.borrow().last() {
        sizes.nix_store_after_add = Some(measure::disk_usage(s));
    }
    if let Err(e) = ctx.release(&["anchors/nix"]) {
        eprintln!("[reclaim] {e}");
    }
}
