mod dry_run;
mod params;
mod validate;
