mod dry_run;
mod exec;
mod params;
mod validate;
