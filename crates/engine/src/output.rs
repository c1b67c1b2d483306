//! Writing to stdout without panicking when the reader goes away (`runbook list | head`).

use std::io::Write;

pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe means nobody reads the rest; that is not an error worth a panic.
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}
