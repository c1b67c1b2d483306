mod dry_run;
mod exec;
mod journal;
mod params;
mod pty;
mod rehearsal;
mod tooling;
mod validate;
