//! The examples `--help` shows after the options of each command (clap's
//! `after_help`), and so the man pages too. Kept apart from `args.rs` so
//! the definitions of the command line stay readable.

pub const TOP: &str = "\
Examples:
  sysgen init                          write a commented sysgen.toml to start from
  sysgen switch web.json --dry-run     what switching to web.json would do; changes nothing
  sysgen switch web.json               build it and make it the active generation
  sysgen rollback                      back to the generation active before
  sysgen --root /mnt/img list          the generations of an image being built
  sysgen gc --keep 5                   keep the 5 newest generations, free the rest

`sysgen help COMMAND` or `sysgen COMMAND --help` shows a command's options and examples.";

pub const BUILD: &str = "\
Examples:
  sysgen build web.json                store what web.json needs; print the generation id
  sysgen build web.toml --json         the same, as one JSON document";

pub const SWITCH: &str = "\
Examples:
  sysgen switch web.json --dry-run     print every step the switch would take; change nothing
  sysgen switch web.json               build, then apply exactly the difference
  sysgen switch 3                      make generation 3 active again (as rollback --to 3)
  sysgen switch web.json --force       overwrite files changed by hand (saved in the store first)";

pub const ROLLBACK: &str = "\
Examples:
  sysgen rollback                      back to the generation active before this one
  sysgen rollback --to 2 --dry-run     what going back to generation 2 would do
  sysgen rollback --to 2 --with-data   also restore the datasets from its snapshots";

pub const DIFF: &str = "\
Examples:
  sysgen diff                          the previous generation against the active one
  sysgen diff web.json                 what `sysgen switch web.json` would change
  sysgen diff -p web.json              the same, with the content changes of text files
  sysgen diff 2 5                      what switching from generation 2 to 5 changes";

pub const LIST: &str = "\
Examples:
  sysgen list                          every generation kept, the active one marked
  sysgen list --json                   the same, for scripts";

pub const STATUS: &str = "\
Examples:
  sysgen status                        the active generation, an interrupted switch, drift";

pub const VERIFY: &str = "\
Examples:
  sysgen verify                        exit 0 when the root matches the active generation, 1 on drift
  sysgen verify --store                also rehash every object kept generations need

sysgen-verify.timer (in the Debian package) runs `sysgen verify` daily; drift is in its journal:
  journalctl -u sysgen-verify.service";

pub const GC: &str = "\
Examples:
  sysgen gc --keep 5 --dry-run         what keeping the 5 newest generations would delete
  sysgen gc --older-than 30d           delete generations older than 30 days
  sysgen gc --keep 0                   delete every generation but the active and pinned ones";

pub const PIN: &str = "\
Examples:
  sysgen pin 3                         gc never deletes generation 3";

pub const UNPIN: &str = "\
Examples:
  sysgen unpin 3                       gc may delete generation 3 again";

pub const RECOVER: &str = "\
Examples:
  sysgen recover                       finish the interrupted switch
  sysgen recover --rollback            undo it: back to the generation active before it";

pub const SCHEMA: &str = "\
Examples:
  sysgen schema > sysgen.schema.json   for an editor that validates JSON against a schema";

pub const COMPLETIONS: &str = "\
Examples:
  sysgen completions bash > /etc/bash_completion.d/sysgen
  sysgen completions zsh > /usr/local/share/zsh/site-functions/_sysgen
  sysgen completions fish > ~/.config/fish/completions/sysgen.fish";

pub const MAN: &str = "\
Examples:
  sysgen man /usr/local/share/man/man8 && man sysgen";

pub const INIT: &str = "\
Examples:
  sysgen init                          write sysgen.toml here (never over an existing file)
  sysgen init /etc/sysgen/host.toml    somewhere else
  sysgen init host.json                the same example in JSON, which has no comments";

pub const ADOPT: &str = "\
Examples:
  sysgen adopt /etc --into ./host      /etc as it is now: ./host/sysgen.json and ./host/files/
  sysgen adopt /etc/nginx /srv/www --into ./web --packages --units
  sysgen switch ./host/sysgen.json     the first generation: nothing on the root changes";

pub const LOG: &str = "\
Examples:
  sysgen log                           every activation, newest last
  sysgen --json log | jq '.activations[-1]'   the last one, for a script";

pub const SHOW: &str = "\
Examples:
  sysgen show                          the active generation
  sysgen show 3                        generation 3: configuration, counts, packages, units";

pub const SAVED: &str = "\
Examples:
  sysgen saved                         the copies kept by --force, repair and takeovers
  sysgen saved 2 --to /root/motd.old   write copy 2 out to a new file (mode 0600)";

pub const REPAIR: &str = "\
Examples:
  sysgen repair --dry-run              what would be put back
  sysgen repair                        put drifted entries back, saving each changed copy first";

pub const CONFIRM: &str = "\
Examples:
  sysgen switch web.json --confirm-within 2m    switch; roll back by itself unless confirmed within 2 minutes
  sysgen confirm 5f3a9c                        keep that switch (run over a fresh connection)
  sysgen confirm --check                       roll back a switch whose time ran out (as the boot unit does)";

pub const DEPLOY: &str = "\
Examples:
  sysgen deploy fleet.toml                     every host: canary first, then batches of 4
  sysgen deploy fleet.toml --limit @web        only the hosts tagged web
  sysgen deploy fleet.toml --parallel 20 --max-failures 3 --rollback-on-stop
  sysgen deploy fleet.toml --json              the summary as one JSON document";

pub const FLEET: &str = "\
Examples:
  sysgen fleet status s3://bucket/fleet        each host's last report: generation, drift, failure
  sysgen fleet status file:///mnt/fleet --stale-after 30m --json";
