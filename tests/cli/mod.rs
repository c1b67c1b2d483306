mod dry_run;
mod exec;
mod journal;
mod params;
mod pty;
mod tooling;
mod validate;
