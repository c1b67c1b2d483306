mod dry_run;
mod exec;
mod journal;
mod params;
mod tooling;
mod validate;
